// Knowledge base (supervisors): find, write and revise articles; draft one from a past contact.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const $ = (id) => document.getElementById(id);
  const lang = document.documentElement.lang;
  let current = null;  // the article being edited (null: a new one)

  const title = (a) => ((a.texts[lang] || a.texts.ko || {}).title || a.key);
  const day = (iso) => (iso ? iso.slice(0, 10) : "");

  async function find() {
    const r = await api("GET", "/api/console/kb/articles?all=1&q=" + encodeURIComponent($("kbm-q").value.trim()));
    const body = $("kbm-list").querySelector("tbody");
    if (!r.ok) { body.replaceChildren(el("tr", {}, el("td", { colSpan: 7 }, r.data.error))); return; }
    if (!r.data.items.length) { body.replaceChildren(el("tr", {}, el("td", { colSpan: 7 }, t("no_results")))); return; }
    body.replaceChildren(...r.data.items.map((a) => {
      const edit = el("button", { type: "button", class: "edit" }, t("kb_edit"));
      edit.addEventListener("click", () => open(a.id));
      return el("tr", { "data-key": a.key }, el("td", {}, a.key), el("td", {}, title(a)), el("td", {}, a.tags.join(", ")),
        el("td", { class: "usage" }, a.usage_count), el("td", {}, a.revision),
        el("td", {}, day(a.valid_from) + " ~ " + day(a.valid_to)), el("td", {}, edit));
    }));
  }

  function show(a) {
    current = a;
    $("kbm-editor").hidden = false;
    $("kbm-id").textContent = a ? "#" + a.id + " · " + t("kb_revision") + " " + a.revision : "";
    const text = (l, f) => (a && a.texts[l] ? a.texts[l][f] : "");
    $("kbm-key").value = a ? a.key : "";
    $("kbm-title-ko").value = text("ko", "title"); $("kbm-body-ko").value = text("ko", "body");
    $("kbm-title-en").value = text("en", "title"); $("kbm-body-en").value = text("en", "body");
    $("kbm-tags").value = a ? a.tags.join(", ") : "";
    for (const box of $("kbm-channels").querySelectorAll("input")) box.checked = !!a && a.channels.includes(box.value);
    $("kbm-from-date").value = a ? day(a.valid_from) : ""; $("kbm-to-date").value = a ? day(a.valid_to) : "";
    $("kbm-owner").value = a ? a.owner : "";
    $("kbm-status").textContent = "";
    $("kbm-revisions").replaceChildren(...((a && a.revisions) || []).map((r) =>
      el("li", {}, "#" + r.revision + " · " + fmtDate(r.at) + " · " + r.author + " · " + ((r.content.texts.ko || {}).title || ""))));
  }

  async function open(id) {
    const r = await api("GET", "/api/console/kb/articles/" + id);
    if (r.ok) show(r.data);
  }

  $("kbm-find").addEventListener("submit", (ev) => { ev.preventDefault(); find(); });
  $("kbm-new").addEventListener("click", () => show(null));
  $("kbm-from").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const r = await api("POST", "/api/console/kb/from-contact/" + encodeURIComponent($("kbm-contact").value.trim()));
    if (r.ok) { await open(r.data.id); find(); }
    else { $("kbm-editor").hidden = false; $("kbm-status").textContent = (r.data && r.data.error) || "error"; }
  });
  $("kbm-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const texts = Object.assign({}, current ? current.texts : {});  // languages this page does not edit are kept
    texts.ko = { title: $("kbm-title-ko").value, body: $("kbm-body-ko").value };
    if ($("kbm-title-en").value || $("kbm-body-en").value) texts.en = { title: $("kbm-title-en").value, body: $("kbm-body-en").value };
    else delete texts.en;
    const body = {
      key: $("kbm-key").value.trim(), texts,
      tags: $("kbm-tags").value.split(",").map((s) => s.trim()).filter(Boolean),
      channels: [...$("kbm-channels").querySelectorAll("input:checked")].map((b) => b.value),
      valid_from: $("kbm-from-date").value || null, valid_to: $("kbm-to-date").value || null,
      owner: $("kbm-owner").value.trim() || null,
    };
    const r = current ? await api("PUT", "/api/console/kb/articles/" + current.id, body)
                      : await api("POST", "/api/console/kb/articles", body);
    $("kbm-status").textContent = r.ok ? t("saved") : (r.data && r.data.error) || "error";
    $("kbm-status").dataset.ok = r.ok ? "1" : "0";
    if (r.ok) { await open(r.data.id); $("kbm-status").textContent = t("saved"); $("kbm-status").dataset.ok = "1"; find(); }
  });
  const from = new URLSearchParams(location.search).get("article");
  if (from) open(from);
  find();
});

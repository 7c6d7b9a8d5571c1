// Admin: edit a configuration file, validate it, save and apply it; upload prompts.
"use strict";
(function () {
  const select = document.getElementById("file-select");
  const text = document.getElementById("file-text");
  const result = document.getElementById("file-result");
  const diff = document.getElementById("file-diff");
  let version = null;

  function showProblems(problems) {
    result.className = "error";
    result.dataset.state = "invalid";
    result.replaceChildren(el("b", {}, t("invalid")), el("ul", {}, ...problems.map((p) => el("li", {}, p))));
  }

  async function load() {
    const r = await api("GET", "/api/console/admin/file?file=" + encodeURIComponent(select.value));
    if (!r.ok) { result.textContent = r.data.error; return; }
    text.value = r.data.text;
    version = r.data.sha256;
    result.replaceChildren(); result.dataset.state = "loaded"; diff.textContent = "";
  }
  select.addEventListener("change", load);

  document.getElementById("btn-validate").addEventListener("click", async () => {
    const r = await api("POST", "/api/console/admin/validate?file=" + encodeURIComponent(select.value), { text: text.value });
    if (!r.ok) { result.textContent = r.data.error; return; }
    diff.textContent = r.data.diff || t("no_changes");
    if (r.data.valid) { result.className = "ok"; result.dataset.state = "valid"; result.textContent = t("valid"); }
    else showProblems(r.data.problems);
  });

  document.getElementById("btn-apply").addEventListener("click", async () => {
    const r = await api("POST", "/api/console/admin/file?file=" + encodeURIComponent(select.value), {
      text: text.value, sha256: version, comment: document.getElementById("file-comment").value,
    });
    if (r.status === 422) { showProblems(r.data.problems); return; }
    if (!r.ok) { result.className = "error"; result.dataset.state = "error"; result.textContent = r.data.error; return; }
    if (r.data.unchanged) { result.className = "ok"; result.dataset.state = "unchanged"; result.textContent = t("no_changes"); return; }
    version = r.data.sha256;
    sessionStorage.setItem("dasan-admin-result", JSON.stringify({ file: select.value, status: r.data.status, result: r.data.result }));
    location.reload();  // the queue table and history are rendered from what is now on disk
  });

  document.getElementById("btn-skills").addEventListener("click", async () => {
    const table = document.getElementById("skills-table"), out = document.getElementById("skills-result");
    const skills = {};
    for (const row of table.querySelectorAll("tbody tr")) {
      const levels = {};
      for (const sel of row.querySelectorAll("select")) if (sel.value) levels[sel.dataset.queue] = parseInt(sel.value, 10);
      skills[row.dataset.agent] = levels;
    }
    const r = await api("POST", "/api/console/admin/proficiencies", {
      skills, sha256: table.dataset.sha, comment: document.getElementById("skills-comment").value });
    if (r.status === 422 && r.data.problems) {
      out.className = "error"; out.dataset.state = "invalid";
      out.replaceChildren(el("b", {}, t("invalid")), el("ul", {}, ...r.data.problems.map((p) => el("li", {}, p))));
      return;
    }
    if (!r.ok) { out.className = "error"; out.dataset.state = "error"; out.textContent = r.data.error; return; }
    if (r.data.unchanged) { out.className = "ok"; out.dataset.state = "unchanged"; out.textContent = t("no_changes"); return; }
    sessionStorage.setItem("dasan-admin-result", JSON.stringify({ file: "agents", status: r.data.status, result: r.data.result }));
    location.reload();
  });

  document.getElementById("prompt-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const out = document.getElementById("prompt-result");
    const r = await api("POST", "/api/console/admin/prompts", new FormData(ev.target), true);
    out.textContent = r.ok ? t("uploaded") + ": " + r.data.sound : r.data.error;
    out.dataset.ok = r.ok ? "1" : "0";
  });

  const saved = sessionStorage.getItem("dasan-admin-result");
  sessionStorage.removeItem("dasan-admin-result");
  const last = saved ? JSON.parse(saved) : null;
  if (last) select.value = last.file;
  load().then(() => {
    if (!last) return;
    result.className = last.status === "failed" ? "error" : "ok";
    result.dataset.state = last.status;
    result.textContent = t(last.status) + " — " + last.result;
  });
})();

// Reviewer: find recordings by date, queue, agent, category, satisfaction and transcript words.
"use strict";
(function () {
  const form = document.getElementById("find-form");
  const tbody = document.querySelector("#recordings tbody");
  async function find() {
    const params = new URLSearchParams();
    for (const [k, v] of new FormData(form).entries()) if (v) params.set(k, v);
    const r = await api("GET", "/api/console/recordings?" + params.toString());
    if (!r.ok) { tbody.replaceChildren(el("tr", {}, el("td", { colSpan: 8 }, r.data.error))); return; }
    if (!r.data.items.length) { tbody.replaceChildren(el("tr", {}, el("td", { colSpan: 8 }, t("no_results")))); return; }
    const ko = document.documentElement.lang === "ko";
    tbody.replaceChildren(...r.data.items.map((x) => el("tr", { "data-recording": x.id },
      el("td", {}, x.id), el("td", {}, fmtDate(x.created_at)), el("td", {}, x.queue || "—"),
      el("td", {}, x.agent || "—"), el("td", {}, x.category ? (ko ? x.category.ko : x.category.en) : "—"),
      el("td", {}, x.satisfaction || "—"), el("td", {}, fmtTime(x.duration_seconds)),
      el("td", {}, el("a", { href: "/console/reviewer/recordings/" + x.id, class: "open-link" }, t("open"))))));
  }
  form.addEventListener("submit", (ev) => { ev.preventDefault(); find(); });
  find();
})();

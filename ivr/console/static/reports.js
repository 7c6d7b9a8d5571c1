// Reports (supervisors): service level, abandonment, wait, talk, satisfaction per day or hour,
// queue, channel and language; every contact of the period as CSV.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const $ = (id) => document.getElementById(id);
  // rp-from / rp-to come filled with this month in the site's time zone (the server's dates).
  const query = () => "from=" + $("rp-from").value + "&to=" + $("rp-to").value;
  const csvLink = () => { $("rp-csv").href = "/api/console/reports/contacts.csv?" + query(); };
  const pct = (v) => (v === null ? "—" : (v * 100).toFixed(1) + "%");
  const num = (v) => (v === null ? "—" : String(Math.round(v * 10) / 10));

  async function show() {
    csvLink();
    const r = await api("GET", "/api/console/reports/summary?" + query() + "&period=" + $("rp-period").value);
    const body = $("rp-table").querySelector("tbody");
    if (!r.ok) { $("rp-note").textContent = (r.data && r.data.error) || "error"; $("rp-note").dataset.ok = "0"; body.replaceChildren(); return; }
    $("rp-note").textContent = t("rp_sl_note").replace("{s}", r.data.service_level_seconds);
    $("rp-note").dataset.ok = "1";
    if (!r.data.rows.length) { body.replaceChildren(el("tr", {}, el("td", { colSpan: 12 }, t("no_results")))); return; }
    body.replaceChildren(...r.data.rows.map((x) => el("tr", { "data-queue": x.queue, "data-period": x.period },
      el("td", {}, x.period), el("td", {}, x.queue || "—"), el("td", {}, label("ch_", x.channel)), el("td", {}, label("lang_", x.language)),
      el("td", {}, x.contacts), el("td", {}, x.answered), el("td", {}, x.abandoned), el("td", { class: "sl" }, pct(x.service_level)),
      el("td", {}, pct(x.abandon_rate)), el("td", {}, num(x.avg_wait_seconds)), el("td", {}, num(x.avg_talk_seconds)),
      el("td", {}, num(x.avg_satisfaction)))));
  }
  $("rp-form").addEventListener("submit", (ev) => { ev.preventDefault(); show(); });
  $("rp-from").addEventListener("change", csvLink); $("rp-to").addEventListener("change", csvLink);
  show();
});

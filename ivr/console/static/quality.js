// Quality: draw random contacts per agent, score them on a scorecard (nothing pre-set), compare
// reviewers (calibration), export; agents acknowledge their evaluations.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const $ = (id) => document.getElementById(id);
  const lang = document.documentElement.lang;
  const name = (n) => (lang === "ko" ? n.ko : n.en);
  const reviewer = !!$("qa-draw");
  let current = null;

  async function loadSamples() {
    const r = await api("GET", "/api/console/qa/samples");
    const body = $("qa-samples").querySelector("tbody");
    if (!r.ok) { body.replaceChildren(el("tr", {}, el("td", { colSpan: 7 }, r.data.error))); return; }
    if (!r.data.items.length) { body.replaceChildren(el("tr", {}, el("td", { colSpan: 7 }, t("no_results")))); return; }
    body.replaceChildren(...r.data.items.map((s) => {
      const open = el("button", { type: "button", class: "score" }, s.scored_by_me ? t("qa_view") : t("qa_score"));
      open.addEventListener("click", () => openSample(s.id));
      return el("tr", { "data-sample": s.id, "data-agent": s.agent }, el("td", {}, s.id), el("td", {}, s.agent_name || s.agent),
        el("td", {}, "#" + s.contact_id), el("td", {}, label("ch_", s.channel)), el("td", {}, fmtDate(s.started_at)),
        el("td", { class: "reviewers" }, s.reviewers.join(", ")), el("td", {}, open));
    }));
  }

  async function openSample(id) {
    const r = await api("GET", "/api/console/qa/samples/" + id);
    if (!r.ok) return;
    current = r.data;
    $("qa-scoring").hidden = false;
    $("qa-scoring").dataset.sample = id;
    $("qa-sample-title").textContent = "#" + id + " · " + (current.agent_name || current.agent) + " · " + name(current.card.name);
    $("qa-score-status").textContent = "";
    delete $("qa-score-status").dataset.ok;
    // One group of radio buttons per criterion, none checked: the reviewer chooses every score.
    $("qa-criteria").replaceChildren(...current.card.criteria.map((c) => {
      const options = [];
      for (let v = 0; v <= c.max; v++) {
        options.push(el("label", { class: "choice" }, el("input", { type: "radio", name: "qa-" + c.key, value: v }), " " + v));
      }
      return el("fieldset", { "data-criterion": c.key }, el("legend", {}, name(c.name) + " (0-" + c.max + ", ×" + c.weight + ")"), ...options);
    }));
    $("qa-score-form").hidden = current.scored_by_me;
    showCalibration();
  }

  function showCalibration() {
    const cal = current.calibration;
    $("qa-blind").hidden = !!cal;
    const head = $("qa-calibration").querySelector("thead"), body = $("qa-calibration").querySelector("tbody");
    if (!cal) { head.replaceChildren(); body.replaceChildren(); return; }
    head.replaceChildren(el("tr", {}, el("th", {}, t("qa_criterion")), ...cal.reviewers.map((r) => el("th", {}, r)), el("th", {}, t("qa_spread"))));
    const names = Object.fromEntries(current.card.criteria.map((c) => [c.key, name(c.name)]));
    const row = (title, scores, spread, key) => el("tr", { "data-criterion": key, class: spread ? "disagree" : "" },
      el("td", {}, title), ...cal.reviewers.map((r) => el("td", {}, scores[r] === undefined ? "—" : scores[r])),
      el("td", { class: "spread" }, spread === null ? "—" : spread));
    body.replaceChildren(...cal.criteria.map((c) => row(names[c.key], c.scores, c.spread, c.key)),
      row(t("qa_total"), cal.total.scores, cal.total.spread, "total"));
  }

  async function loadMine() {
    const r = await api("GET", "/api/console/qa/mine");
    const body = $("qa-mine").querySelector("tbody");
    if (!r.ok) { $("qa-mine-card").hidden = true; return; }  // reviewers are not evaluated
    if (!r.data.items.length) { body.replaceChildren(el("tr", {}, el("td", { colSpan: 5 }, t("no_results")))); return; }
    body.replaceChildren(...r.data.items.map((e) => {
      let ack;
      if (e.acknowledged_at) ack = el("span", { class: "acked" }, t("qa_acked") + " " + fmtDate(e.acknowledged_at));
      else {
        ack = el("button", { type: "button", class: "ack" }, t("qa_ack"));
        ack.addEventListener("click", async () => {
          const a = await api("POST", "/api/console/qa/evaluations/" + e.id + "/ack", {});
          if (a.ok) loadMine();
        });
      }
      return el("tr", { "data-evaluation": e.id }, el("td", {}, "#" + e.contact_id), el("td", {}, e.reviewer),
        el("td", {}, e.total), el("td", {}, e.comment), el("td", {}, ack));
    }));
  }

  if (reviewer) {
    // qa-from / qa-to come filled with this month in the site's time zone (the server's dates).
    const exportLink = () => { $("qa-export").href = "/api/console/qa/export.csv?from=" + $("qa-from").value + "&to=" + $("qa-to").value; };
    $("qa-from").addEventListener("change", exportLink); $("qa-to").addEventListener("change", exportLink); exportLink();
    $("qa-draw").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const r = await api("POST", "/api/console/qa/samples", { from: $("qa-from").value, to: $("qa-to").value,
        per_agent: Number($("qa-per-agent").value), scorecard: $("qa-scorecard").value });
      $("qa-draw-status").textContent = r.ok ? t("qa_drawn") + ": " + r.data.drawn : (r.data && r.data.error) || "error";
      $("qa-draw-status").dataset.ok = r.ok ? "1" : "0";
      loadSamples();
    });
    $("qa-score-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const scores = {};
      for (const c of current.card.criteria) {
        const chosen = document.querySelector("input[name='qa-" + c.key + "']:checked");
        if (chosen) scores[c.key] = Number(chosen.value);
      }
      const r = await api("POST", "/api/console/qa/samples/" + current.id + "/evaluations", { scores, comment: $("qa-comment").value });
      // Saved: the sample is shown again (the calibration with this score) before the page says so.
      if (r.ok) { await openSample(current.id); loadSamples(); }
      $("qa-score-status").textContent = r.ok ? t("qa_saved") : (r.data && r.data.error) || "error";
      $("qa-score-status").dataset.ok = r.ok ? "1" : "0";
    });
    loadSamples();
  }
  loadMine();
});

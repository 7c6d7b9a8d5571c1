// Wallboard: figures pushed by WebSocket (live.metrics); charts of today by hour, channel, language.
"use strict";
(function () {
  const status = document.getElementById("ws-status");
  let byHour = new Array(24).fill(0);
  const pct = (v) => (v === null || v === undefined ? "—" : Math.round(v * 100) + "%");
  const set = (id, v) => { document.getElementById(id).textContent = v; };

  const tzEl = document.getElementById("site-tz");
  let siteTz = tzEl ? tzEl.textContent.trim() : undefined;
  // The site's clock (timezone in the metrics), not the browser's: the hour chart is site-local too.
  // HH:MM:SS in both languages (ko-KR would spell out 시/분/초 on a wall screen)
  const siteTime = (iso) => new Date(iso).toLocaleTimeString("en-GB", { timeZone: siteTz, hour12: false });
  const hourLabels = () => byHour.map((_, i) => i + t("hour_suffix"));

  function bars(canvas, labels, values) {
    // a chart as wide as its card (a fixed 600 px canvas cut hours off on a 1280 px screen)
    if (canvas.classList.contains("fit") && canvas.clientWidth) canvas.width = canvas.clientWidth;
    const g = canvas.getContext("2d"), w = canvas.width, h = canvas.height;
    g.clearRect(0, 0, w, h);
    const max = Math.max(1, ...values), n = Math.max(1, values.length), bw = w / n;
    g.font = "11px sans-serif"; g.textAlign = "center";
    values.forEach((v, i) => {
      const bh = (v / max) * (h - 30);
      g.fillStyle = "#1f6feb"; g.fillRect(i * bw + 2, h - 15 - bh, bw - 4, bh);
      g.fillStyle = "#222"; g.fillText(labels[i], i * bw + bw / 2, h - 3);
      if (v) g.fillText(String(v), i * bw + bw / 2, h - 18 - bh);
    });
    canvas.dataset.values = values.join(",");
    canvas.dataset.labels = labels.join(",");
  }

  function render(m) {
    const queues = m.queues || {}, agents = m.agents || {}, today = m.today || {};
    let waiting = 0, longest = 0, answered = 0, abandoned = 0, within = 0;
    const rows = Object.entries(queues).map(([name, q]) => {
      waiting += q.waiting || 0; longest = Math.max(longest, q.longest_wait || 0);
      answered += q.answered || 0; abandoned += q.abandoned || 0; within += q.answered_within_sl || 0;
      const a = q.agents || {};
      return el("tr", { "data-queue": name }, el("td", {}, name), el("td", { class: "waiting" }, q.waiting || 0),
        el("td", {}, fmtTime(q.longest_wait)), el("td", {}, a.available || 0), el("td", {}, a.on_call || 0),
        el("td", {}, a.paused || 0), el("td", {}, pct(q.service_level)), el("td", {}, pct(q.abandon_rate)));
    });
    document.querySelector("#queues tbody").replaceChildren(...rows);
    set("tot-waiting", waiting); set("tot-longest", fmtTime(longest));
    set("tot-available", agents.available || 0); set("tot-on_call", agents.on_call || 0); set("tot-paused", agents.paused || 0);
    const offered = answered + abandoned;
    set("tot-sl", offered ? pct(within / offered) : "—"); set("tot-abandon", offered ? pct(abandoned / offered) : "—");
    set("tot-csat", today.avg_satisfaction === null || today.avg_satisfaction === undefined ? "—" : today.avg_satisfaction.toFixed(1));
    set("tot-today", today.total || 0);
    if (m.timezone) { siteTz = m.timezone; if (tzEl) tzEl.textContent = m.timezone; }
    set("updated-at", siteTime(m.at || new Date().toISOString()));
    const ch = today.by_channel || {}, lg = today.by_language || {};
    bars(document.getElementById("chart-channel"), Object.keys(ch).map((k) => label("ch_", k)), Object.values(ch));
    bars(document.getElementById("chart-language"), Object.keys(lg).map((k) => label("lang_", k)), Object.values(lg));
    bars(document.getElementById("chart-hour"), hourLabels(), byHour);
  }

  async function refreshHours() {
    const r = await api("GET", "/api/console/wallboard");
    if (r.ok) { byHour = r.data.by_hour; bars(document.getElementById("chart-hour"), hourLabels(), byHour); }
  }

  // The badge says "live" only while both the page's socket and the phone system are up.
  let socketOpen = false;
  function badge() {
    const down = ["down", "silent"].includes(document.body.dataset.phone);
    status.textContent = !socketOpen ? t("offline") : down ? t("phone_is_down") : t("live");
    status.className = "badge " + (socketOpen && !down ? "good" : "bad");
  }
  const phone = PhoneBanner(document.getElementById("phone-banner"), badge);

  // Supervisors: the live calls, each with listen / whisper / barge.
  const callsTable = document.getElementById("live-calls");
  const svNote = document.getElementById("supervise-note");
  let calls = [], callsDue = null;
  function svSay(text, error) { svNote.textContent = text; svNote.className = error ? "note error" : "note"; svNote.dataset.error = error ? "1" : "0"; }
  function renderCalls() {
    const now = Date.now();
    const rows = calls.map((c) => {
      const talking = c.state === "connected";
      const buttons = talking ? ["listen", "whisper", "barge"].map((mode) => el("button", {
        class: "sv-" + mode, "data-mode": mode, onclick: () => supervise(c, mode) }, t("mode_" + mode))) : [];
      const since = c.answered_at || c.since;
      return el("tr", { "data-call": c.call, "data-agent": c.agent || "" },
        el("td", {}, c.caller || "—"), el("td", {}, c.agent_name || "—"), el("td", {}, c.queue || "—"),
        el("td", {}, t("call_state_" + c.state)), el("td", {}, since ? siteTime(since) : "—"),
        el("td", {}, since ? fmtTime((now - new Date(since).getTime()) / 1000) : "—"),
        el("td", { class: "menu-path" }, c.menu_path.join(" › ") || "—"), el("td", {}, ...buttons));
    });
    callsTable.querySelector("tbody").replaceChildren(...rows);
    document.getElementById("no-live-calls").hidden = calls.length > 0;
  }
  async function loadCalls() {
    callsDue = null;
    const r = await api("GET", "/api/console/calls");
    if (r.ok) { calls = r.data.items; renderCalls(); document.body.dataset.calls = String(calls.length); }
  }
  function callsSoon() { if (callsTable && !callsDue) callsDue = setTimeout(loadCalls, 300); }
  async function supervise(call, mode) {
    const r = await api("POST", "/api/console/calls/supervise", { call: call.call, mode });
    if (r.ok) svSay(t("sv_ringing"), false);
    else svSay(t("sv_failed") + ": " + (r.status === 503 ? t("phone_down") : (r.data && r.data.error) || r.status), true);
  }

  function connect() {
    const ws = new WebSocket(wsUrl("/ws/console/wallboard"));
    ws.onopen = () => { socketOpen = true; badge(); callsSoon(); };
    ws.onmessage = (ev) => {
      const msg = JSON.parse(ev.data);
      if (msg.by_hour) byHour = msg.by_hour;
      if (msg.type === "metrics") { render(msg.metrics); callsSoon(); document.body.dataset.updates = String(Number(document.body.dataset.updates || 0) + 1); }
      else if (msg.type === "phone") phone.update(msg);
      else if (msg.type === "supervise") {
        if (msg.error) svSay(t("sv_failed") + ": " + msg.error, true);
        else if (msg.switched) svSay(t("sv_switched") + ": " + t("mode_" + msg.from) + " → " + t("mode_" + msg.mode), false);
        else svSay(t("sv_started") + " (" + t("mode_" + msg.mode) + ")", false);
      }
    };
    ws.onclose = () => { socketOpen = false; badge(); setTimeout(connect, 2000); };
  }
  if (callsTable) setInterval(() => { if (calls.length) renderCalls(); }, 1000);
  connect();
  setInterval(refreshHours, 60000);
})();

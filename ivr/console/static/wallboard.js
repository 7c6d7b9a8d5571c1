// Wallboard: figures pushed by WebSocket (live.metrics); charts of today by hour, channel, language.
"use strict";
(function () {
  const status = document.getElementById("ws-status");
  let byHour = new Array(24).fill(0);
  const pct = (v) => (v === null || v === undefined ? "—" : Math.round(v * 100) + "%");
  const set = (id, v) => { document.getElementById(id).textContent = v; };

  function bars(canvas, labels, values) {
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
    set("updated-at", m.at ? fmtDate(m.at) : new Date().toLocaleTimeString());
    const ch = today.by_channel || {}, lg = today.by_language || {};
    bars(document.getElementById("chart-channel"), Object.keys(ch).map((k) => label("ch_", k)), Object.values(ch));
    bars(document.getElementById("chart-language"), Object.keys(lg).map((k) => label("lang_", k)), Object.values(lg));
    bars(document.getElementById("chart-hour"), byHour.map((_, i) => String(i)), byHour);
  }

  async function refreshHours() {
    const r = await api("GET", "/api/console/wallboard");
    if (r.ok) { byHour = r.data.by_hour; bars(document.getElementById("chart-hour"), byHour.map((_, i) => String(i)), byHour); }
  }

  function connect() {
    const ws = new WebSocket(wsUrl("/ws/console/wallboard"));
    ws.onopen = () => { status.textContent = t("live"); status.className = "badge good"; };
    ws.onmessage = (ev) => {
      const msg = JSON.parse(ev.data);
      if (msg.by_hour) byHour = msg.by_hour;
      if (msg.type === "metrics") { render(msg.metrics); document.body.dataset.updates = String(Number(document.body.dataset.updates || 0) + 1); }
    };
    ws.onclose = () => { status.textContent = t("offline"); status.className = "badge bad"; setTimeout(connect, 2000); };
  }
  connect();
  setInterval(refreshHours, 60000);
})();

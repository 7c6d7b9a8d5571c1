// Player: waveform (peaks from the server) on a canvas, transcript beside it; clicking a line
// seeks there, and the line being spoken follows playback.
"use strict";
(function () {
  const id = document.getElementById("player").dataset.recording;
  const audio = document.getElementById("audio");
  const canvas = document.getElementById("waveform");
  const list = document.getElementById("transcript");
  let peaks = [], lanes = null, duration = 0, segments = [];

  // One waveform, or with caller and agent apart two lanes: caller on top, agent below.
  function drawLane(g, values, top, h, w, played) {
    const bar = w / Math.max(1, values.length);
    values.forEach((p, i) => {
      const x = i * bar, y = Math.max(1, p * h * 0.95);
      g.fillStyle = (i / values.length) <= played ? "#1f6feb" : "#9db4d0";
      g.fillRect(x, top + (h - y) / 2, Math.max(1, bar - 0.5), y);
    });
  }

  function draw() {
    const g = canvas.getContext("2d"), w = canvas.width, h = canvas.height;
    g.clearRect(0, 0, w, h);
    const total = duration || audio.duration || 1;
    const played = (audio.currentTime || 0) / total;
    if (lanes) {
      drawLane(g, lanes.caller, 0, h / 2, w, played);
      drawLane(g, lanes.agent, h / 2, h / 2, w, played);
      g.fillStyle = "#ccc";
      g.fillRect(0, h / 2, w, 1);
    } else {
      drawLane(g, peaks, 0, h, w, played);
    }
    g.fillStyle = "#d22";
    g.fillRect(played * w, 0, 2, h);
  }

  function follow() {
    const now = audio.currentTime;
    let current = null;
    for (const s of segments) if (now >= s.start && now < s.end) current = s;
    for (const li of list.children) li.classList.toggle("current", current !== null && li.dataset.segment === String(current.id));
    list.dataset.current = current ? current.id : "";
    document.getElementById("position").textContent = fmtTime(now) + " / " + fmtTime(duration || audio.duration);
    draw();
  }

  function seek(seconds) {
    audio.currentTime = seconds;
    follow();
  }

  canvas.addEventListener("click", (ev) => {
    const rect = canvas.getBoundingClientRect();
    seek(((ev.clientX - rect.left) / rect.width) * (duration || audio.duration || 0));
  });
  audio.addEventListener("timeupdate", follow);
  audio.addEventListener("seeked", follow);
  audio.addEventListener("loadedmetadata", follow);

  api("GET", "/api/console/recordings/" + id + "/peaks?n=500").then((r) => {
    if (!r.ok) return;
    peaks = r.data.peaks; duration = r.data.duration; canvas.dataset.peaks = peaks.length;
    if (r.data.lanes) { lanes = r.data.lanes; canvas.dataset.lanes = "caller agent"; }
    draw();
  });
  api("GET", "/api/recordings/" + id + "/transcript").then((r) => {
    if (!r.ok || !r.data.segments.length) { list.replaceChildren(el("li", {}, t("no_transcript"))); return; }
    segments = r.data.segments;
    const twoLanes = segments.some((s) => s.speaker === "caller" || s.speaker === "agent");
    list.classList.toggle("lanes", twoLanes);
    document.getElementById("lane-heads").hidden = !twoLanes;
    list.replaceChildren(...segments.map((s) => {
      const li = el("li", { "data-segment": s.id, "data-start": s.start, class: "seg " + s.speaker },
        el("span", { class: "at" }, fmtTime(s.start)), " ", el("span", { class: "who" }, t("lane_" + s.speaker) === "lane_" + s.speaker ? s.speaker : t("lane_" + s.speaker)), " ", s.text);
      li.addEventListener("click", () => { seek(s.start + 0.01); });
      return li;
    }));
    list.dataset.ready = "1";
  });

  document.getElementById("qa-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const data = new FormData(ev.target), scores = {};
    for (const k of ["greeting", "accuracy", "empathy", "resolution"]) scores[k] = parseInt(data.get(k), 10);
    const r = await api("POST", "/api/console/recordings/" + id + "/reviews", { scores, comment: data.get("comment") || "" });
    const out = document.getElementById("qa-status");
    out.textContent = r.ok ? t("qa_saved") + " " + t("qa_total") + ": " + r.data.total : r.data.error;
    out.dataset.ok = r.ok ? "1" : "0";
    if (r.ok) document.getElementById("reviews").prepend(el("li", {}, r.data.total + " — " + (data.get("comment") || "")));
  });
})();

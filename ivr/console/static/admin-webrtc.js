// The admin page's browser-call card: settings as rendered and who can take video calls.
"use strict";

(async function () {
  const response = await fetch("/api/console/admin/webrtc", {credentials: "same-origin"});
  if (!response.ok) return;
  const w = await response.json();
  const settings = document.getElementById("webrtc-settings");
  const rows = [["enabled", String(w.enabled)], ["WebSocket", w.ws_url], ["TLS", w.tls ? `${w.tls_cert_file} / ${w.tls_private_key}` : "—"],
                ["STUN", w.stun_server || "—"], ["TURN", w.turn_server ? `${w.turn_server} (${w.turn_credentials})` : "—"],
                ["video queue", w.video_queue], ["lines (video / voice)", `${w.video_slots} / ${w.voice_slots}`],
                ["credential (s) / per minute", `${w.credential_ttl_seconds} / ${w.mint_per_minute}`]];
  for (const [label, value] of rows) {
    settings.append(Object.assign(document.createElement("dt"), {textContent: label}),
                    Object.assign(document.createElement("dd"), {textContent: value}));
  }
  const body = document.querySelector("#webrtc-agents tbody");
  for (const a of w.agents) {
    const tr = document.createElement("tr");
    tr.dataset.agent = a.username;
    for (const text of [`${a.name} (${a.username}, ${a.extension})`, a.video.join(", ") || "—", a.softphone ? "✓" : "—"]) {
      tr.append(Object.assign(document.createElement("td"), {textContent: text}));
    }
    body.append(tr);
  }
  document.getElementById("webrtc-card").dataset.loaded = "yes";
})();

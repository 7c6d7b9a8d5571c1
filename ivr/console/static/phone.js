// Is the phone system (Asterisk, through the AMI bridge) reachable? Shared by the agent screen
// and the wallboard: a plain banner when it is not, instead of figures that look live.
"use strict";
window.PhoneBanner = function PhoneBanner(banner, onChange) {
  let every = 5, lastBeat = 0, state = "unknown";

  function set(next, text) {
    banner.hidden = next !== "down" && next !== "silent";
    banner.textContent = text || "";
    if (next !== state) {
      state = next;
      document.body.dataset.phone = next;
      if (onChange) onChange(next);
    }
  }

  // A message: the page's first snapshot ({known, connected, reason}) or a live.ami heartbeat.
  function update(msg) {
    every = msg.every || every;
    if (!msg.known) { set("unknown", ""); return; }
    if (msg.reason === "silent") { set("silent", t("phone_silent")); return; }
    lastBeat = Date.now();
    if (msg.connected) set("up", "");
    else set("down", t("phone_down"));
  }

  // No heartbeat for three intervals: the bridge itself is gone (or the bus between us).
  setInterval(() => {
    if (lastBeat && Date.now() - lastBeat > 3 * every * 1000 && state !== "silent") set("silent", t("phone_silent"));
  }, 1000);

  return { update, state: () => state };
};

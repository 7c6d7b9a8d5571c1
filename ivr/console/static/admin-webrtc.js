// The admin page's browser-call card: the settings as rendered, and the form that edits them
// (ports, certificate, STUN/TURN, TURN secrets never shown back, softphone and video agents).
"use strict";

(function () {
  const card = document.getElementById("webrtc-card");
  const form = document.getElementById("webrtc-form");
  const result = document.getElementById("webrtc-result");
  const FIELDS = ["enabled", "http_bind", "http_port", "tls", "tls_bind", "tls_port", "tls_cert_file", "tls_private_key",
                  "ws_url", "stun_server", "turn_server", "turn_username"];
  const SECRETS = ["turn_secret", "turn_password"];
  let version = null;

  function input(name) { return document.getElementById("webrtc-" + name); }

  function show(w) {
    const settings = document.getElementById("webrtc-settings");
    const rows = [["WebSocket", w.ws_url], ["TURN", w.turn_server ? `${w.turn_server} (${w.turn_credentials})` : "—"],
                  ["video queue", w.video_queue], ["lines (video / voice)", `${w.video_slots} / ${w.voice_slots}`],
                  ["credential (s) / per minute", `${w.credential_ttl_seconds} / ${w.mint_per_minute}`]];
    settings.replaceChildren(...rows.flatMap(([label, value]) => [el("dt", {}, label), el("dd", {}, value)]));
    for (const name of FIELDS) {
      const box = input(name);
      if (box.type === "checkbox") box.checked = Boolean(w.edit[name]);
      else box.value = name === "ws_url" ? (w.edit.ws_url || "") : String(w.edit[name] ?? "");
    }
    for (const name of SECRETS) {
      input(name).value = "";
      input(name).placeholder = w.edit[name + "_set"] ? t("webrtc_secret_set") : t("webrtc_secret_unset");
      input(name).dataset.set = w.edit[name + "_set"] ? "yes" : "no";
    }
    input("turn-clear").checked = false;
    const body = document.querySelector("#webrtc-agents tbody");
    body.replaceChildren();
    for (const a of w.agents) {
      const video = el("input", {type: "checkbox", class: "takes-video", checked: a.takes_video});
      const softphone = el("input", {type: "checkbox", class: "softphone", checked: a.softphone});
      const tr = el("tr", {"data-agent": a.username},
                    el("td", {}, `${a.name} (${a.username}, ${a.extension})`),
                    el("td", {}, video, " ", a.video.join(", ") || "—"),
                    el("td", {}, softphone));
      body.append(tr);
    }
    version = w.version;
  }

  async function load() {
    const r = await api("GET", "/api/console/admin/webrtc");
    if (!r.ok) return;
    show(r.data);
    card.dataset.loaded = "yes";
  }

  function problems(list) {
    result.className = "error";
    result.dataset.state = "invalid";
    result.replaceChildren(el("b", {}, t("invalid")), el("ul", {}, ...list.map((p) => el("li", {}, p))));
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = {version, comment: input("comment").value};
    for (const name of FIELDS) {
      const box = input(name);
      body[name] = box.type === "checkbox" ? box.checked : box.type === "number" ? Number(box.value) : box.value.trim();
    }
    for (const name of SECRETS) {
      if (input("turn-clear").checked) body[name] = "";
      else if (input(name).value) body[name] = input(name).value;
    }
    const rows = [...document.querySelectorAll("#webrtc-agents tbody tr")];
    body.video_agents = rows.filter((tr) => tr.querySelector(".takes-video").checked).map((tr) => tr.dataset.agent);
    body.softphone_agents = rows.filter((tr) => tr.querySelector(".softphone").checked).map((tr) => tr.dataset.agent);
    result.dataset.state = "saving";
    const r = await api("POST", "/api/console/admin/webrtc", body);
    if (r.status === 422) { problems(r.data.problems); return; }
    if (r.status === 400 && r.data.details) { problems(r.data.details.map((d) => `${d.field}: ${d.problem}`)); return; }
    if (!r.ok) { result.className = "error"; result.dataset.state = "error"; result.textContent = r.data.error; return; }
    await load();
    result.className = r.data.status === "applied" ? "ok" : "";
    result.dataset.state = r.data.unchanged ? "unchanged" : "saved";
    result.textContent = r.data.unchanged ? t("no_changes") : `${t("webrtc_saved")} (${r.data.status}): ${r.data.result}`;
  });

  load();
})();

// The citizens' /call page: sign-language video and voice calls over WebRTC (JsSIP), the web
// chat, a photo report (Open311) and a tracking-number check. Every failure the citizen can
// meet has its own message in the page's language and points to an alternative (the chat).
"use strict";

const T = JSON.parse(document.getElementById("texts").textContent);
const $ = (id) => document.getElementById(id);
let pageToken = document.body.dataset.token;
let active = null; // {ua, session, stream, kind, connected}

function say(key, showAlternatives) {
  const box = $("message");
  box.textContent = T[key] || key;
  box.dataset.key = key;
  box.hidden = false;
  $("alternatives").hidden = !showAlternatives;
}

function clearMessage() {
  $("message").hidden = true;
  $("message").dataset.key = "";
  $("alternatives").hidden = true;
}

function callState(key) {
  $("call-state").textContent = T[key] || key;
  $("call-state").dataset.key = key;
}

// getUserMedia's errors, by name, to what the citizen can do about them.
function mediaErrorKey(err, kind) {
  const name = err && err.name;
  if (name === "NotAllowedError" || name === "SecurityError" || name === "PermissionDeniedError") return "err_permission";
  if (name === "NotFoundError" || name === "DevicesNotFoundError" || name === "OverconstrainedError") {
    return kind === "video" ? "err_no_camera" : "err_no_microphone";
  }
  if (name === "NotReadableError") return kind === "video" ? "err_no_camera" : "err_no_microphone";
  return "err_unsupported";
}

const REFUSALS = {rate_limited: "err_busy", busy: "err_busy", expired: "err_expired", replayed: "err_expired",
                  invalid: "err_expired", unavailable: "err_unavailable"};

async function checkOpen(kind) {
  const status = await fetch("/api/webcall/status").then((r) => r.json());
  if (!status.enabled) return "err_disabled";
  if (kind === "video" && !status.video.open) return "err_closed";
  if (kind === "video" && status.video.agents_logged_in === 0) return "err_no_agent";
  return null;
}

async function getMedia(kind) {
  const video = kind === "video" ? {width: {ideal: 1280}, height: {ideal: 720}, frameRate: {ideal: 30}} : false;
  return navigator.mediaDevices.getUserMedia({audio: true, video});
}

async function mint(kind) {
  const response = await fetch("/api/webcall/credentials", {
    method: "POST", headers: {"Content-Type": "application/json"},
    body: JSON.stringify({kind, token: pageToken, lang: document.body.dataset.lang})});
  const body = await response.json().catch(() => ({}));
  if (body.token) pageToken = body.token; // a fresh one-time token for the next attempt
  if (!response.ok) throw Object.assign(new Error(body.error || response.status), {key: REFUSALS[body.reason] || "err_unavailable"});
  return body;
}

function endCall(messageKey, alternatives) {
  const call = active;
  active = null;
  if (call) {
    call.stream.getTracks().forEach((t) => t.stop());
    if (call.timer) clearInterval(call.timer);
    try { call.ua.stop(); } catch (e) { /* already stopped */ }
  }
  $("call").hidden = true;
  $("choices").hidden = false;
  $("keypad").hidden = true;
  if (messageKey) say(messageKey, alternatives);
  // A counsellor answered: ask for the score on screen (the spoken survey is no use to a deaf caller).
  if (call && call.connected && messageKey === "ended") {
    survey = {username: call.cred.username, password: call.cred.password};
    $("survey").hidden = false;
    $("survey-result").textContent = "";
  }
}

let survey = null; // the last call's credential, for its one survey answer
$("survey").addEventListener("click", async (ev) => {
  const score = Number(ev.target.dataset && ev.target.dataset.score);
  if (!score || !survey) return;
  const answer = survey;
  survey = null;
  const r = await fetch("/api/webcall/survey", {method: "POST", headers: {"Content-Type": "application/json"},
    body: JSON.stringify({...answer, score})});
  $("survey-result").textContent = r.ok ? T.survey_thanks : T.err_unavailable;
  $("survey-result").dataset.ok = String(r.ok);
});

// Asterisk answers at once and queues the call; the counsellor is there when their media
// arrives (video frames decoded, or for voice the call is simply up).
async function watchConnected(call) {
  const pc = call.session.connection;
  if (!pc || call.connected) return;
  const stats = await pc.getStats();
  stats.forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "video" && s.framesDecoded > 0 && !call.connected) {
      call.connected = true;
      callState("in_call");
    }
  });
}

async function startCall(kind) {
  clearMessage();
  if (active) return;
  $("survey").hidden = true;
  if (!window.RTCPeerConnection || !navigator.mediaDevices || !window.JsSIP) return say("err_unsupported", true);
  if (!navigator.onLine) return say("err_network", true);
  try {
    const closed = await checkOpen(kind);
    if (closed) return say(closed, true);
  } catch (e) {
    return say("err_network", true);
  }
  let stream;
  try {
    stream = await getMedia(kind);
  } catch (err) {
    return say(mediaErrorKey(err, kind), true);
  }
  if (kind === "video" && stream.getVideoTracks().length === 0) {
    stream.getTracks().forEach((t) => t.stop());
    return say("err_no_camera", true);
  }
  let cred;
  try {
    cred = await mint(kind);
  } catch (err) {
    stream.getTracks().forEach((t) => t.stop());
    return say(err.key || "err_network", true);
  }
  $("choices").hidden = true;
  $("call").hidden = false;
  $("local-video").hidden = kind !== "video";
  $("local-video").srcObject = kind === "video" ? stream : null;
  callState("connecting");
  const ua = new JsSIP.UA({
    sockets: [new JsSIP.WebSocketInterface(cred.ws_url)], uri: cred.uri, authorization_user: cred.username,
    password: cred.password, register: false, user_agent: "dasan-call",
    // RFC 4028 session timers (JsSIP refreshes every 45 s): a phone that lost its network sends
    // no BYE, and Asterisk ends the call when the refresh does not come.
    session_timers: true,
  });
  const call = {ua, stream, kind, cred, session: null, connected: false, timer: null, marks: {minted: Date.now()}};
  active = call;
  ua.on("disconnected", () => { if (active === call && call.session && !call.session.isEnded()) endCall("err_network", true); });
  ua.start();
  const session = ua.call(cred.target, {
    mediaStream: stream,
    pcConfig: {iceServers: cred.ice_servers, bundlePolicy: "max-bundle", rtcpMuxPolicy: "require"},
  });
  call.session = session;
  session.on("sending", () => { call.marks.sending = Date.now(); });
  window.dasanCall = call; // for the tests' getStats() probes
  session.on("peerconnection", (e) => {
    e.peerconnection.addEventListener("track", (ev) => {
      const target = ev.track.kind === "video" ? $("remote-video") : $("remote-audio");
      target.srcObject = ev.streams[0] || new MediaStream([ev.track]);
    });
  });
  // When the counsellor answers, Asterisk updates the connected line (UPDATE or re-INVITE):
  // the sign that someone is there even when their camera sends nothing.
  const counsellorJoined = () => {
    if (call.connected || active !== call) return;
    call.connected = true;
    callState("in_call");
  };
  session.on("update", counsellorJoined);
  session.on("reinvite", counsellorJoined);
  session.on("confirmed", () => {
    callState(kind === "video" ? "waiting" : "in_call");
    if (kind === "voice") call.connected = true;
    call.timer = setInterval(() => watchConnected(call).catch(() => {}), 500);
  });
  session.on("failed", (e) => {
    if (active !== call) return;
    const causes = JsSIP.C.causes;
    const key = e.cause === causes.CONNECTION_ERROR || e.cause === causes.REQUEST_TIMEOUT ? "err_network"
      : e.cause === causes.AUTHENTICATION_ERROR ? "err_expired"
      : e.cause === causes.USER_DENIED_MEDIA_ACCESS ? "err_permission"
      : "err_no_agent";
    endCall(key, true);
  });
  session.on("ended", (e) => {
    if (active !== call) return;
    const reason = e.message && e.message.getHeader ? (e.message.getHeader("Reason") || "") : "";
    const causes = JsSIP.C.causes;
    if (/cause=34\b/.test(reason)) endCall("err_no_agent", true);
    else if (e.cause === causes.RTP_TIMEOUT || e.cause === causes.CONNECTION_ERROR || e.cause === causes.REQUEST_TIMEOUT) endCall("err_network", true);
    else endCall("ended", false);
  });
}

$("btn-video").addEventListener("click", () => startCall("video"));
$("btn-voice").addEventListener("click", () => startCall("voice"));
$("btn-hangup").addEventListener("click", () => {
  if (active && active.session && !active.session.isEnded()) active.session.terminate();
  endCall("ended", false);
});
$("btn-mute").addEventListener("click", (ev) => {
  if (!active || !active.session) return;
  const muted = active.session.isMuted().audio;
  if (muted) active.session.unmute({audio: true}); else active.session.mute({audio: true});
  ev.currentTarget.setAttribute("aria-pressed", String(!muted));
});
$("btn-keypad").addEventListener("click", () => { $("keypad").hidden = !$("keypad").hidden; });
$("keypad").addEventListener("click", (ev) => {
  const digit = ev.target.dataset && ev.target.dataset.digit;
  if (digit && active && active.session && active.session.isEstablished()) {
    active.session.sendDTMF(digit, {transportType: "RFC2833", duration: 160});
  }
});
window.addEventListener("offline", () => { if (active) endCall("err_network", true); });

// -- report a problem (Open311) ------------------------------------------------------------
$("btn-report").addEventListener("click", async () => {
  $("report").hidden = !$("report").hidden;
  const select = $("report-service");
  if (select.options.length) return;
  const services = await fetch(`/open311/v2/services.json?lang=${document.body.dataset.lang}`).then((r) => r.json()).catch(() => []);
  for (const s of services) select.add(new Option(s.service_name, s.service_code));
});
$("report-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const form = new FormData(ev.currentTarget);
  form.set("token", pageToken);
  form.set("lang", document.body.dataset.lang);
  const response = await fetch("/api/webcall/report", {method: "POST", body: form});
  const body = await response.json().catch(() => ({}));
  if (body.token) pageToken = body.token;
  $("report-result").textContent = response.ok ? `${T.report_done} ${body.tracking_number}` : (body.error || T.err_unavailable);
  $("report-result").dataset.ok = String(response.ok);
});

// -- check a request by its tracking number -------------------------------------------------
$("btn-track").addEventListener("click", () => { $("track").hidden = !$("track").hidden; });
$("track-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const number = $("track-number").value.trim();
  const out = $("track-result");
  out.textContent = "";
  const response = await fetch(`/open311/v2/requests/${encodeURIComponent(number)}.json`);
  const body = response.ok ? await response.json() : [];
  const item = Array.isArray(body) ? body[0] : null;
  if (!item) { out.textContent = T.track_none; return; }
  for (const [label, value] of [[T.track_status, item.status], [T.category, item.service_name], [T.description, item.status_notes || item.description || ""]]) {
    out.append(Object.assign(document.createElement("dt"), {textContent: label}), Object.assign(document.createElement("dd"), {textContent: value}));
  }
});

if ("serviceWorker" in navigator) navigator.serviceWorker.register("/call/sw.js", {scope: "/call"}).catch(() => {});

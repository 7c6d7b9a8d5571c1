// The agent's softphone in the console: JsSIP registered as the agent's own PJSIP endpoint
// (webrtc.softphone_agents), so queue calls to PJSIP/<extension> ring here, audio and video.
"use strict";

(function () {
  const T = JSON.parse(document.getElementById("texts").textContent);
  const $ = (id) => document.getElementById(id);
  const sp = {ua: null, session: null, config: null, stream: null, recording: null};
  window.dasanSoftphone = sp; // the tests' getStats() probes read sp.session.connection

  function state(key) {
    $("sp-state").textContent = T[key] || key;
    $("sp-state").dataset.state = key;
  }

  function controls(inCall, ringing) {
    $("sp-answer").disabled = !ringing;
    for (const id of ["sp-hangup"]) $(id).disabled = !(inCall || ringing);
    for (const id of ["sp-mute", "sp-hold", "sp-dtmf-send", "sp-transfer"]) $(id).disabled = !inCall;
  }

  function attach(pc) {
    pc.addEventListener("track", (ev) => {
      const target = ev.track.kind === "video" ? $("sp-remote") : $("sp-audio");
      target.srcObject = ev.streams[0] || new MediaStream([ev.track]);
    });
  }

  // -- recording the sign-language video for review (MixMonitor keeps audio only) ----------
  // The citizen's picture with both voices mixed, as WebM, uploaded in chunks during the call
  // and checked against its SHA-256 at the end (ivr/webrtc/video_recording.py).
  function csrf() {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  }

  function contactId() {
    const field = document.getElementById("record-contact");
    return field && field.value ? field.value : null;
  }

  function startRecording(session) {
    const pc = session.connection;
    const video = pc.getReceivers().map((r) => r.track).find((t) => t && t.kind === "video");
    if (!video || !window.MediaRecorder || sp.recording) return;
    const audio = new AudioContext();
    const mix = audio.createMediaStreamDestination();
    const remoteAudio = pc.getReceivers().map((r) => r.track).filter((t) => t && t.kind === "audio");
    for (const track of [...remoteAudio, ...(sp.stream ? sp.stream.getAudioTracks() : [])]) {
      audio.createMediaStreamSource(new MediaStream([track])).connect(mix);
    }
    const recorder = new MediaRecorder(new MediaStream([video, ...mix.stream.getAudioTracks()]),
                                       {mimeType: "video/webm", videoBitsPerSecond: 600000});
    const rec = {recorder, audio, chunks: [], seq: 0, uploads: Promise.resolve(), started: Date.now(), failed: false};
    recorder.ondataavailable = (ev) => {
      if (!ev.data || ev.data.size === 0) return;
      rec.chunks.push(ev.data);
      const blob = ev.data;
      rec.uploads = rec.uploads.then(async () => {
        const id = contactId();
        if (!id || rec.failed) { rec.pending = (rec.pending || []).concat([blob]); return; }
        for (const part of (rec.pending || []).concat([blob])) {
          const r = await fetch(`/api/console/contacts/${id}/video/chunks?seq=${rec.seq}`, {
            method: "POST", body: part, headers: {"Content-Type": "video/webm", "X-CSRF-Token": csrf()}});
          if (!r.ok) { rec.failed = true; return; }
          rec.seq += 1;
        }
        rec.pending = [];
      });
    };
    recorder.start(2000);
    sp.recording = rec;
  }

  async function stopRecording() {
    const rec = sp.recording;
    sp.recording = null;
    if (!rec) return;
    await new Promise((resolve) => {
      if (rec.recorder.state === "inactive") { resolve(); return; } // stopped with its tracks
      rec.recorder.onstop = resolve;
      rec.recorder.stop();
    });
    rec.audio.close();
    await rec.uploads;
    const id = contactId();
    if (!id || rec.failed || rec.seq === 0) { $("sp-note").textContent = T.sp_not_recorded; return; }
    const whole = await new Blob(rec.chunks).arrayBuffer();
    const digest = Array.from(new Uint8Array(await crypto.subtle.digest("SHA-256", whole)))
      .map((b) => b.toString(16).padStart(2, "0")).join("");
    const r = await fetch(`/api/console/contacts/${id}/video/finish`, {
      method: "POST", headers: {"Content-Type": "application/json", "X-CSRF-Token": csrf()},
      body: JSON.stringify({sha256: digest, seconds: (Date.now() - rec.started) / 1000})});
    const body = await r.json().catch(() => ({}));
    $("sp-note").textContent = r.ok ? `${T.sp_recorded} #${body.recording_id}` : T.sp_not_recorded;
    $("softphone-card").dataset.recording = r.ok ? String(body.recording_id) : "failed";
  }

  function finished() {
    stopRecording().catch(() => { $("sp-note").textContent = T.sp_not_recorded; });
    if (sp.stream) sp.stream.getTracks().forEach((t) => t.stop());
    sp.stream = null;
    sp.session = null;
    $("sp-local").srcObject = null;
    $("sp-remote").srcObject = null;
    controls(false, false);
    state(sp.ua && sp.ua.isRegistered() ? "sp_registered" : "sp_unregistered");
  }

  function offeredVideo(session) {
    const request = session._request; // the INVITE
    return Boolean(request && /\bm=video [1-9]/.test(request.body || ""));
  }

  function incoming(session) {
    if (sp.session) { session.terminate({status_code: 486}); return; } // one call at a time
    sp.session = session;
    state("sp_ringing");
    controls(false, true);
    session.on("peerconnection", (e) => attach(e.peerconnection));
    session.on("confirmed", () => {
      state("sp_in_call");
      controls(true, false);
      try { startRecording(session); } catch (err) { $("sp-note").textContent = T.sp_not_recorded; }
    });
    session.on("hold", () => state("sp_on_hold"));
    session.on("unhold", () => state("sp_in_call"));
    session.on("ended", finished);
    session.on("failed", finished);
  }

  async function answer() {
    const session = sp.session;
    if (!session) return;
    const video = offeredVideo(session);
    try {
      sp.stream = await navigator.mediaDevices.getUserMedia({
        audio: true, video: video ? {width: {ideal: 1280}, height: {ideal: 720}, frameRate: {ideal: 30}} : false});
    } catch (err) {
      $("sp-note").textContent = T.sp_no_media;
      // Answer anyway without sending video: the browser answers "recvonly", never m=video 0,
      // so Asterisk keeps the citizen's video (asterisk/asterisk#1173, docs/webrtc.md).
      sp.stream = await navigator.mediaDevices.getUserMedia({audio: true, video: false}).catch(() => null);
    }
    $("sp-local").srcObject = sp.stream;
    session.answer({
      mediaStream: sp.stream || undefined,
      pcConfig: {iceServers: sp.config.ice_servers, bundlePolicy: "max-bundle", rtcpMuxPolicy: "require"},
    });
  }

  async function start() {
    const response = await fetch("/api/console/softphone", {credentials: "same-origin"});
    const config = response.ok ? await response.json() : {enabled: false};
    if (!config.enabled || !window.JsSIP) {
      $("sp-note").textContent = T.sp_off;
      $("softphone-card").dataset.enabled = "no";
      return;
    }
    sp.config = config;
    $("softphone-card").dataset.enabled = "yes";
    for (const q of config.queues) $("sp-transfer-queue").add(new Option(q, q));
    state("sp_connecting");
    const ua = new JsSIP.UA({
      sockets: [new JsSIP.WebSocketInterface(config.ws_url)], uri: config.uri, authorization_user: config.username,
      password: config.password, register: true, register_expires: 300, session_timers: true,
      user_agent: "dasan-console",
    });
    sp.ua = ua;
    ua.on("registered", () => { if (!sp.session) state("sp_registered"); });
    ua.on("unregistered", () => state("sp_unregistered"));
    ua.on("registrationFailed", () => state("sp_unregistered"));
    ua.on("disconnected", () => { if (!sp.session) state("sp_unregistered"); });
    ua.on("newRTCSession", (e) => { if (e.originator === "remote") incoming(e.session); });
    ua.start();
  }

  $("sp-answer").addEventListener("click", () => answer());
  $("sp-hangup").addEventListener("click", () => { if (sp.session && !sp.session.isEnded()) sp.session.terminate(); });
  $("sp-mute").addEventListener("click", (ev) => {
    if (!sp.session) return;
    const muted = sp.session.isMuted().audio;
    if (muted) sp.session.unmute({audio: true}); else sp.session.mute({audio: true});
    ev.currentTarget.setAttribute("aria-pressed", String(!muted));
  });
  $("sp-hold").addEventListener("click", (ev) => {
    if (!sp.session) return;
    const held = sp.session.isOnHold().local;
    if (held) sp.session.unhold(); else sp.session.hold();
    ev.currentTarget.setAttribute("aria-pressed", String(!held));
  });
  $("sp-dtmf-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const digits = $("sp-dtmf").value.replace(/[^0-9*#]/g, "");
    if (sp.session && digits) sp.session.sendDTMF(digits, {transportType: "RFC2833", duration: 160});
    $("sp-dtmf").value = "";
  });
  $("sp-transfer-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const queue = $("sp-transfer-queue").value;
    // A blind transfer (REFER) to q-<queue> in the agents' context: the caller joins that queue.
    // Asterisk reports the outcome in NOTIFYs; on success the transferer hangs up (RFC 5589).
    const session = sp.session;
    if (session && queue) {
      session.refer(`sip:q-${queue}@${sp.config.uri.split("@")[1]}`, {eventHandlers: {
        accepted: () => { if (!session.isEnded()) session.terminate(); },
        failed: () => { $("sp-note").textContent = `${T.transfer}: ${queue} ✗`; },
      }});
    }
  });
  window.addEventListener("beforeunload", () => { if (sp.ua) sp.ua.stop(); });
  start().catch((err) => { $("sp-note").textContent = String(err); });
})();

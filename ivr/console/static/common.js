// Shared by every console page: texts, JSON calls with the CSRF token, the language switch.
"use strict";
window.T = JSON.parse(document.getElementById("texts").textContent);
window.t = (key) => (window.T[key] !== undefined ? window.T[key] : key);
// A code's label ("ch_" + "sms" -> "문자"), or the code itself when the catalogue has none.
window.label = (prefix, code) => (window.T[prefix + code] !== undefined ? window.T[prefix + code] : code);

window.api = async function api(method, url, body, isForm) {
  const meta = document.querySelector('meta[name="csrf-token"]');
  const headers = { "Accept": "application/json" };
  if (meta) headers["X-CSRF-Token"] = meta.content;
  const init = { method, headers, credentials: "same-origin" };
  if (body !== undefined) {
    if (isForm) init.body = body;
    else { headers["Content-Type"] = "application/json"; init.body = JSON.stringify(body); }
  }
  const response = await fetch(url, init);
  let data = null;
  try { data = await response.json(); } catch (e) { data = null; }
  if (!response.ok && !(data && (data.problems || data.error))) {
    data = { error: response.status + " " + response.statusText };
  }
  return { ok: response.ok, status: response.status, data };
};

window.el = function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else if (k.startsWith("data-")) node.setAttribute(k, v);
    else node[k] = v;
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
};

window.fmtTime = function fmtTime(seconds) {
  seconds = Math.max(0, Math.floor(seconds || 0));
  const m = Math.floor(seconds / 60), s = seconds % 60;
  return m + ":" + String(s).padStart(2, "0");
};

window.fmtDate = function fmtDate(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  return d.toLocaleString(document.documentElement.lang === "ko" ? "ko-KR" : "en-GB");
};

window.wsUrl = (path) => (location.protocol === "https:" ? "wss://" : "ws://") + location.host + path;

document.addEventListener("DOMContentLoaded", () => {
  const sw = document.getElementById("language-switch");
  if (sw) sw.addEventListener("change", async () => {
    const r = await api("POST", "/api/console/language", { language: sw.value });
    if (r.ok) location.reload();
  });
});

// The /call page's service worker: makes the page installable and keeps its static files for
// a quick start. The page itself (a one-time form token) and every API call always go to the
// network; offline, a navigation gets a short notice instead of the browser's error page.
const CACHE = "dasan-call-v1";
const SHELL = ["/static/webcall/call.css", "/static/webcall/call.js", "/static/webcall/icon.svg",
               "/static/vendor/jssip.min.js"];

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(CACHE).then((cache) => cache.addAll(SHELL)).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil(caches.keys().then((keys) => Promise.all(keys.filter((k) => k !== CACHE).map((k) => caches.delete(k))))
    .then(() => self.clients.claim()));
});

self.addEventListener("fetch", (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== "GET" || url.origin !== location.origin) return;
  if (event.request.mode === "navigate") {
    event.respondWith(fetch(event.request).catch(() => new Response(
      "<!doctype html><meta charset=utf-8><meta name=viewport content='width=device-width'>" +
      "<p>오프라인입니다. 연결되면 다시 시도하세요.</p><p>You are offline. Try again when connected.</p>",
      {headers: {"Content-Type": "text/html; charset=utf-8"}})));
    return;
  }
  if (SHELL.includes(url.pathname)) {
    // stale-while-revalidate: answer from the cache, refresh it behind
    event.respondWith(caches.open(CACHE).then(async (cache) => {
      const cached = await cache.match(event.request);
      const fresh = fetch(event.request).then((r) => { if (r.ok) cache.put(event.request, r.clone()); return r; });
      return cached || fresh;
    }));
  }
});

// Photos to PACS service worker: keeps the app shell (style, script, icons) for a quick start.
// It never stores the page, patient data or any /api/ answer: only the files listed here.
const CACHE = "photos-shell-{{ version }}";
const SHELL = {{ shell|safe }};

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(CACHE).then((cache) => cache.addAll(SHELL)).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil(caches.keys()
    .then((keys) => Promise.all(keys.filter((k) => k.startsWith("photos-shell-") && k !== CACHE).map((k) => caches.delete(k))))
    .then(() => self.clients.claim()));
});

self.addEventListener("fetch", (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== "GET" || url.origin !== self.location.origin) return;
  if (SHELL.includes(url.pathname)) {
    event.respondWith(caches.match(event.request).then((hit) => hit || fetch(event.request)));
  } else if (event.request.mode === "navigate") {
    event.respondWith(fetch(event.request).catch(() => new Response(
      "<!doctype html><meta name=viewport content='width=device-width'><title>Offline</title>" +
      "<p style='font:1.2rem sans-serif;padding:1rem'>No network: photos cannot be sent right now. 無網路連線。</p>",
      {headers: {"Content-Type": "text/html; charset=utf-8"}})));
  }
});

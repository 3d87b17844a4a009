// The family app's service worker: an offline shell. The page and its static files are
// cached on install and served from the cache when the network is down; the API is never
// cached (bookings and personal data must be fresh, and must not linger on a shared phone).
"use strict";

const SHELL = "relay-app-shell-v1";
const FILES = [
  "/app", "/static/app.js", "/static/i18n.js", "/static/style.css",
  "/static/i18n/en.json", "/static/i18n/cy.json", "/static/app.webmanifest", "/static/app-icon.svg",
];

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(SHELL).then((c) => c.addAll(FILES)).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil(caches.keys()
    .then((keys) => Promise.all(keys.filter((k) => k !== SHELL).map((k) => caches.delete(k))))
    .then(() => self.clients.claim()));
});

self.addEventListener("fetch", (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== "GET" || url.origin !== location.origin) return;
  if (!FILES.includes(url.pathname)) return;
  event.respondWith(fetch(event.request).then((res) => {
    const copy = res.clone();
    caches.open(SHELL).then((c) => c.put(event.request, copy));
    return res;
  }).catch(() => caches.match(event.request)));
});

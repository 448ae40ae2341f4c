/* pushpipe service worker.
 *
 * push              -> show the notification from the decrypted payload, ping "delivered"
 * notificationclick -> ping "clicked", open (or focus) the notification's URL
 * notificationclose -> ping "closed"
 *
 * The payload (JSON) is what the send path builds:
 *   {nid, campaign, variant, title, body, url, icon, ping: {url, token}}
 * or, for a campaign with "declarative": true, the Declarative Web Push shape
 *   {web_push: 8030, notification: {title, body, navigate, icon, lang, tag, data: {...}},
 *    mutable: true}
 *
 * Pings are fire-and-forget: one small POST with `keepalive` so it survives the worker
 * being stopped, sent as text/plain so the browser needs no CORS preflight. The browser
 * retries nothing by itself; the server counts a repeated ping once anyway.
 */
'use strict';

const PING_TIMEOUT_MS = 10000;

function ping(data, type) {
  if (!data || !data.ping || !data.ping.url || !data.ping.token) {
    return Promise.resolve();
  }
  const body = JSON.stringify({ type, token: data.ping.token, ts: new Date().toISOString() });
  const controller = typeof AbortController === 'function' ? new AbortController() : null;
  const timer = controller ? setTimeout(() => controller.abort(), PING_TIMEOUT_MS) : null;
  return fetch(data.ping.url, {
    method: 'POST',
    mode: 'cors',
    credentials: 'omit',
    keepalive: true,
    headers: { 'Content-Type': 'text/plain;charset=UTF-8' },
    body,
    signal: controller ? controller.signal : undefined,
  })
    .catch(() => undefined) // a lost ping is never worth an error in the page
    .finally(() => timer && clearTimeout(timer));
}

// Declarative Web Push (web_push: 8030; Safari 18.4+, the W3C Push API draft): the
// browser could show it without us; with mutable: true this worker runs, shows it and
// pings delivery. Our fields travel in notification.data. Returns the flat shape.
function flat(raw) {
  if (!raw || raw.web_push !== 8030 || typeof raw.notification !== 'object') return raw;
  const n = raw.notification || {};
  const d = (n.data && typeof n.data === 'object') ? n.data : {};
  return {
    nid: d.nid, campaign: d.campaign, variant: d.variant, ping: d.ping,
    title: n.title, body: n.body, icon: n.icon, url: n.navigate,
  };
}

function readPayload(event) {
  if (!event.data) return null;
  try {
    return flat(event.data.json());
  } catch (e) {
    return null; // not ours (or not JSON): nothing to show or count
  }
}

self.addEventListener('install', () => self.skipWaiting());
self.addEventListener('activate', (event) => event.waitUntil(self.clients.claim()));

self.addEventListener('push', (event) => {
  const data = readPayload(event);
  if (!data || !data.title) return;
  const options = {
    body: data.body || '',
    icon: data.icon || undefined,
    tag: data.nid || undefined, // a resent duplicate replaces, not stacks
    data: { url: data.url || '/', nid: data.nid, ping: data.ping },
  };
  event.waitUntil(
    self.registration
      .showNotification(data.title, options)
      .then(() => ping(data, 'delivered'))
  );
});

self.addEventListener('notificationclick', (event) => {
  const data = event.notification.data || {};
  event.notification.close();
  const open = self.clients
    .matchAll({ type: 'window', includeUncontrolled: true })
    .then((windows) => {
      for (const w of windows) {
        if (w.url === data.url && 'focus' in w) return w.focus();
      }
      return self.clients.openWindow ? self.clients.openWindow(data.url || '/') : undefined;
    })
    .catch(() => undefined);
  event.waitUntil(Promise.all([ping(data, 'clicked'), open]));
});

self.addEventListener('notificationclose', (event) => {
  event.waitUntil(ping(event.notification.data || {}, 'closed'));
});

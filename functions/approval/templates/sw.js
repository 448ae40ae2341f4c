/* pushpipe approvers' test-push service worker: shows the test notification, pings nothing. */
'use strict';
self.addEventListener('install', () => self.skipWaiting());
self.addEventListener('activate', (event) => event.waitUntil(self.clients.claim()));
self.addEventListener('push', (event) => {
  let data = null;
  try { data = event.data ? event.data.json() : null; } catch (e) { data = null; }
  if (!data || !data.title) return;
  event.waitUntil(self.registration.showNotification('[TEST] ' + data.title, {
    body: data.body || '', icon: data.icon || undefined, tag: data.nid || undefined,
    data: { url: data.url || '/' },
  }));
});
self.addEventListener('notificationclick', (event) => {
  event.notification.close();
  const url = (event.notification.data || {}).url;
  if (url && self.clients.openWindow) event.waitUntil(self.clients.openWindow(url));
});

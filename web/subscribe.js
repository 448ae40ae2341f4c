/* pushpipe subscribe snippet.
 *
 *   <script src="subscribe.js"></script>
 *   <script>
 *     pushpipe.subscribe({
 *       api: 'https://<api id>.execute-api.<region>.amazonaws.com', // the HTTP API base
 *       tenant: 'acme',
 *       siteKey: 'sk-...',         // the tenant's public site key (bound to its web origins)
 *       vapidPublicKey: 'BF...',   // base64url, from the stack output / local cloud
 *       topics: ['news'], language: 'de', country: 'DE',
 *       serviceWorker: '/sw.js',
 *     }).then((r) => console.log('subscribed', r.id));
 *   </script>
 *
 * Asks permission (call it from a click: browsers refuse prompts without a gesture),
 * registers the service worker, subscribes with the VAPID key and posts the
 * PushSubscription to POST /v1/subscriptions. The subscription id is kept in
 * localStorage (pushpipe.subscriber) so the shop can send it with orders.
 */
(function (global) {
  'use strict';

  function urlBase64ToUint8Array(base64String) {
    const padding = '='.repeat((4 - (base64String.length % 4)) % 4);
    const base64 = (base64String + padding).replace(/-/g, '+').replace(/_/g, '/');
    const raw = global.atob(base64);
    const out = new Uint8Array(raw.length);
    for (let i = 0; i < raw.length; i += 1) out[i] = raw.charCodeAt(i);
    return out;
  }

  function fail(message) {
    return Promise.reject(new Error('pushpipe: ' + message));
  }

  async function subscribe(options) {
    const o = options || {};
    if (!o.api || !o.tenant || !o.siteKey || !o.vapidPublicKey) {
      return fail('api, tenant, siteKey and vapidPublicKey are required');
    }
    if (!('serviceWorker' in navigator) || !('PushManager' in global)) {
      return fail('this browser does not support Web Push');
    }
    const permission = await Notification.requestPermission();
    if (permission !== 'granted') return fail('notification permission ' + permission);
    const registration = await navigator.serviceWorker.register(o.serviceWorker || '/sw.js');
    await navigator.serviceWorker.ready;
    let subscription = await registration.pushManager.getSubscription();
    if (!subscription) {
      subscription = await registration.pushManager.subscribe({
        userVisibleOnly: true,
        applicationServerKey: urlBase64ToUint8Array(o.vapidPublicKey),
      });
    }
    const response = await fetch(o.api.replace(/\/$/, '') + '/v1/subscriptions', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'X-Pushpipe-Site-Key': o.siteKey },
      body: JSON.stringify({
        tenant: o.tenant,
        subscription: subscription.toJSON(),
        topics: o.topics || [],
        language: o.language || (navigator.language || 'en').toLowerCase().split('-')[0],
        country: o.country || undefined,
      }),
    });
    const result = await response.json().catch(() => ({}));
    if (!response.ok) {
      return fail('subscription refused (' + response.status + '): ' + (result.message || ''));
    }
    try {
      global.localStorage.setItem('pushpipe.subscriber', result.id);
    } catch (e) {
      /* private mode: the id is still returned */
    }
    return { id: result.id, subscription };
  }

  async function unsubscribe(options) {
    const o = options || {};
    const registration = await navigator.serviceWorker.getRegistration(o.serviceWorker || '/sw.js');
    const subscription = registration && (await registration.pushManager.getSubscription());
    const id = global.localStorage.getItem('pushpipe.subscriber');
    if (!subscription || !id) return false;
    const auth = subscription.toJSON().keys.auth;
    const url =
      o.api.replace(/\/$/, '') + '/v1/subscriptions/' + encodeURIComponent(id) +
      '?tenant=' + encodeURIComponent(o.tenant);
    await fetch(url, { method: 'DELETE', headers: { 'X-Pushpipe-Auth': auth } });
    await subscription.unsubscribe();
    global.localStorage.removeItem('pushpipe.subscriber');
    return true;
  }

  global.pushpipe = { subscribe, unsubscribe };
})(typeof window !== 'undefined' ? window : self);

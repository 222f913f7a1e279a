/*
 * footfall's browser tracker: a drop-in for Umami's script.js (same data-* attributes, same window.umami API, same request
 * bodies), written for footfall. This is the readable source; assets/script.js is its minified form (assets/build.sh).
 *
 *   <script defer src="https://analytics.example.com/script.js" data-website-id="…"></script>
 *
 * Beyond Umami: when the page is hidden it reports how long the page was visible (`duration`, ms) in a `performance` event,
 * so a one-page visit has a real length. With data-performance="true" that event also carries the web vitals.
 */
((win, doc, nav, loc) => {
  const script = doc.currentScript;
  if (!script) return;

  const attr = (name) => script.getAttribute('data-' + name);
  const isTrue = (name) => attr(name) == 'true';
  const website = attr('website-id');
  const host = (attr('host-url') || script.src.split('/').slice(0, -1).join('/')).replace(/\/$/, '');
  const endpoint = host + '/api/send';
  const tag = attr('tag') || undefined;
  const domains = (attr('domains') || '').split(',').map((d) => d.trim()).filter(Boolean);
  const beforeSend = attr('before-send');
  const credentials = attr('fetch-credentials') || 'omit';
  const autoTrack = attr('auto-track') != 'false';
  const dnt = isTrue('do-not-track') && [1, '1', 'yes'].includes(win.doNotTrack || nav.doNotTrack || nav.msDoNotTrack);

  let cache, identity, disabled;

  const pageUrl = () => {
    const u = new URL(loc.href);
    if (isTrue('exclude-search')) u.search = '';
    if (isTrue('exclude-hash')) u.hash = '';
    return '' + u;
  };
  let url = pageUrl();
  let referrer = doc.referrer.startsWith(loc.origin) ? '' : doc.referrer;

  const blocked = () => {
    let optedOut;
    try { optedOut = localStorage.getItem('umami.disabled'); } catch (e) { /* storage may be unavailable */ }
    return !website || disabled || optedOut || dnt || (domains.length && !domains.includes(loc.hostname));
  };

  const payload = (extra) => Object.assign({
    website, screen: screen.width + 'x' + screen.height, language: nav.language, title: doc.title,
    hostname: loc.hostname, url, referrer, tag, id: identity,
  }, extra);

  // Page-hide reports go by sendBeacon: a text/plain body needs no CORS preflight, which browsers drop while unloading.
  const post = (body, type, beacon) => {
    const json = JSON.stringify({ type, payload: body });
    return body && (beacon ? nav.sendBeacon(endpoint, json) : fetch(endpoint, {
      method: 'POST', keepalive: true, credentials, body: json,
      headers: Object.assign({ 'Content-Type': 'application/json' }, cache == null ? {} : { 'x-umami-cache': cache }),
    }).then((r) => r.json()).then((answer) => {
      cache = answer.cache;
      disabled = !!answer.disabled;
    }));
  };
  const send = (body, type = 'event', beacon) => blocked() ? Promise.resolve() :
    (win[beforeSend] ? Promise.resolve(win[beforeSend](type, body)) : Promise.resolve(body))
      .then((body) => post(body, type, beacon))
      .catch(() => { /* analytics must never break the page */ });

  const track = (a, b) => send(
    typeof a == 'string' ? payload({ name: a, data: b }) :
    typeof a == 'object' ? a :
    typeof a == 'function' ? a(payload()) : payload());

  const identify = (a, b) => {
    if (typeof a == 'string') identity = a;
    cache = '';
    return send(payload({ data: typeof a == 'object' ? a : b }), 'identify');
  };

  /* Visible time and web vitals of the current page, reported once when it is hidden or left. */
  const now = () => Date.now();
  const visible = () => doc.visibilityState == 'visible';
  let visibleMs, shownAt, vitals, reported, clsWindow, clsLast;
  const resetPage = () => {
    visibleMs = clsWindow = clsLast = reported = 0;
    vitals = {};
    shownAt = visible() && now();
  };
  resetPage();
  const report = () => {
    if (reported || !autoTrack) return;
    reported = 1;
    if (shownAt) visibleMs += now() - shownAt;
    shownAt = 0;
    send(payload(Object.assign({ duration: visibleMs }, vitals)), 'performance', 1);
  };
  doc.addEventListener('visibilitychange', () => visible() ? shownAt = shownAt || now() : report());
  win.addEventListener('pagehide', report);

  const observe = (type, handle) => {
    try {
      new PerformanceObserver((list) => list.getEntries().forEach(handle)).observe({ type, buffered: true, durationThreshold: 40 });
    } catch (e) { /* not supported by this browser */ }
  };
  if (isTrue('performance')) {
    observe('navigation', (e) => vitals.ttfb = e.responseStart);
    observe('paint', (e) => e.name == 'first-contentful-paint' && (vitals.fcp = e.startTime));
    observe('largest-contentful-paint', (e) => vitals.lcp = e.startTime);
    observe('layout-shift', (e) => {
      // CLS is the worst session window: shifts less than 1 s apart (windows are short in practice, so no 5 s cap)
      if (e.hadRecentInput) return;
      clsWindow = e.startTime - clsLast > 1000 ? e.value : clsWindow + e.value;
      clsLast = e.startTime;
      vitals.cls = Math.max(vitals.cls || 0, clsWindow);
    });
    observe('event', (e) => e.interactionId && (vitals.inp = Math.max(vitals.inp || 0, e.duration)));
  }

  /* Single-page apps: a pageview after each history change, with the previous URL as referrer. */
  const navigated = () => {
    const next = pageUrl();
    if (next == url) return;
    report();
    resetPage();
    referrer = url;
    url = next;
    setTimeout(track, 300);
  };

  /* Elements with data-umami-event="name" and data-umami-event-key="value" send custom events when clicked. */
  const onClick = (e) => {
    const el = e.target.closest('[data-umami-event]');
    if (!el) return;
    const data = {};
    for (const a of el.attributes) {
      const m = a.name.match(/^data-umami-event-([\w-]+)$/);
      if (m) data[m[1]] = a.value;
    }
    const sent = track(el.getAttribute('data-umami-event'), data);
    const href = el.tagName == 'A' && el.href;
    if (href && /^(_self|_top|)$/.test(el.target) && !(e.defaultPrevented || e.button || e.ctrlKey || e.metaKey || e.shiftKey)) {
      e.preventDefault();
      sent.then(() => (el.target == '_top' ? top.location : loc).href = href);
    }
  };

  win.umami = { track, identify, getSession: () => ({ cache, website }) };

  const start = () => {
    if (!autoTrack) return;
    for (const name of ['pushState', 'replaceState']) {
      const original = history[name];
      history[name] = function () {
        original.apply(this, arguments);
        navigated();
      };
    }
    win.addEventListener('popstate', navigated);
    doc.addEventListener('click', onClick, true);
    track();
  };
  if (doc.readyState == 'complete') start();
  else doc.addEventListener('readystatechange', () => doc.readyState == 'complete' && start());
})(window, document, navigator, location);

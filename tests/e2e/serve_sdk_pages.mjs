// Serves the browser SDK pages of tst_sdk_defaults on a loopback port (an origin other than the
// collector's, as on a real site), with the libraries from node_modules. Prints {"port": N}, then
// one {"report": {...}} line per page that reported what it sent (the SDK's own message ids), and
// serves until it is killed or --seconds have passed.
//
//   node serve_sdk_pages.mjs --collector http://127.0.0.1:PORT [--seconds 120]
//
// Pages:
//   /segment?setup=standard   analytics-next, settings given inline, Segment.io pointed at the collector
//   /segment?setup=batching   the same with deliveryStrategy batching (posts /v1/b)
//   /segment?setup=cdn        analytics-next with cdnURL = the collector: settings fetched from it
//   /posthog-autocapture      posthog-js with autocapture: true; a button is clicked
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const args = Object.fromEntries(
  process.argv.slice(2).reduce((pairs, arg, i, all) => (arg.startsWith('--') ? [...pairs, [arg.slice(2), all[i + 1]]] : pairs), []));
const collector = args.collector;
if (!collector) {
  console.error('serve_sdk_pages: --collector is required');
  process.exit(2);
}
const seconds = Number(args.seconds ?? 120);
const here = path.dirname(fileURLToPath(import.meta.url));
const modules = process.env.PIPESCOPE_NODE_MODULES ?? path.join(here, 'node_modules');
// analytics-next's build for use without a bundler: a UMD bundle exposing window.AnalyticsNext.
const analyticsNext = fs.readFileSync(path.join(modules, '@segment', 'analytics-next', 'dist', 'umd', 'index.js'));
const posthogJs = fs.readFileSync(path.join(modules, 'posthog-js', 'dist', 'array.full.js'));

// Runs first on every page: headless Chromium says it is automated, and posthog-js drops the
// traffic of what it takes for a bot. A test-page stand-in for a person's browser, never product code.
const looksLikeAPerson = `<script>
  Object.defineProperty(Navigator.prototype, 'webdriver', { get: () => false });
  if (navigator.userAgentData) {
    const brands = navigator.userAgentData.brands.filter((b) => !/headless/i.test(b.brand));
    Object.defineProperty(navigator, 'userAgentData', { get: () => ({ brands, mobile: false, platform: 'Linux' }) });
  }
</script>`;

const report = `
  function report(body) {
    return fetch('/report', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  }`;

function segmentPage(setup) {
  return `<!doctype html>
<html><head><meta charset="utf-8"><title>analytics-next ${setup}</title></head>
<body><p id="state">loading</p>
<script src="/analytics-next.js"></script>
<script>
  ${report}
  const collector = ${JSON.stringify(collector)};
  const setup = ${JSON.stringify(setup)};
  const writeKey = 'wk_' + setup;
  const segmentio = { apiHost: collector.replace(/^https?:\\/\\//, '') + '/v1', protocol: 'http' };
  if (setup === 'batching')
    segmentio.deliveryStrategy = { strategy: 'batching', config: { size: 3, timeout: 300 } };
  // cdn: settings from <cdnURL>/v1/projects/<writeKey>/settings, i.e. from the collector. The
  // others give them inline, as a site without Segment's CDN does, and point Segment.io here.
  const settings = setup === 'cdn' ? { writeKey, cdnURL: collector }
                                   : { writeKey, cdnSettings: { integrations: { 'Segment.io': { apiKey: writeKey } } } };
  const options = setup === 'cdn' ? {} : { integrations: { 'Segment.io': segmentio } };
  (async () => {
    try {
      const [analytics] = await AnalyticsNext.AnalyticsBrowser.load(settings, options);
      const sent = [];
      const note = (ctx, name) => sent.push({ messageId: ctx.event.messageId, type: ctx.event.type, name,
                                              distinct_id: ctx.event.userId || ctx.event.anonymousId });
      note(await analytics.page('Pricing', { plan: 'pro' }), '$pageview');
      note(await analytics.identify('user-' + setup, { plan: 'pro' }), '$identify');
      note(await analytics.track('Order Completed', { revenue: 42, currency: 'EUR' }), 'Order Completed');
      note(await analytics.group('org-' + setup, { name: 'Acme' }), '$groupidentify');
      note(await analytics.alias('user-' + setup + '-new', 'user-' + setup), '$create_alias');
      await report({ page: 'segment', setup, writeKey, sent, delivered: sent.length });
      document.getElementById('state').textContent = 'sent';
    } catch (error) {
      await report({ page: 'segment', setup, error: String(error && error.stack || error) });
    }
  })();
</script></body></html>`;
}

const posthogPage = `<!doctype html>
<html><head><meta charset="utf-8"><title>posthog-js autocapture</title>${looksLikeAPerson}</head>
<body><p id="state">loading</p>
<main><section class="checkout"><button id="buy" class="primary" data-attr="buy-button">Buy now</button></section></main>
<script src="/posthog.js"></script>
<script>
  ${report}
  const captured = [];
  posthog.init('phc_autocapture_e2e', {
    api_host: ${JSON.stringify(collector)},
    autocapture: true,   // the app's own setting: the collector's answers must leave it on
    request_batching: false,
    persistence: 'memory',
    loaded: (ph) => {
      ph.on('eventCaptured', (event) => captured.push(event.event));
      // Autocapture starts once the remote config arrived; click until posthog-js takes it.
      let clicks = 0;
      const timer = setInterval(() => {
        if (captured.includes('$autocapture') || ++clicks > 50) {
          clearInterval(timer);
          report({ page: 'posthog', distinct_id: ph.get_distinct_id(), clicks, captured });
          return;
        }
        document.getElementById('buy').click();
      }, 200);
    },
  });
</script></body></html>`;

const server = http.createServer((request, response) => {
  const url = new URL(request.url, 'http://localhost');
  if (url.pathname === '/analytics-next.js' || url.pathname === '/posthog.js') {
    response.writeHead(200, { 'content-type': 'application/javascript' });
    response.end(url.pathname === '/posthog.js' ? posthogJs : analyticsNext);
  } else if (url.pathname === '/segment') {
    response.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    response.end(segmentPage(url.searchParams.get('setup') ?? 'standard'));
  } else if (url.pathname === '/posthog-autocapture') {
    response.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    response.end(posthogPage);
  } else if (url.pathname === '/report' && request.method === 'POST') {
    let body = '';
    request.on('data', (chunk) => (body += chunk));
    request.on('end', () => {
      try {
        console.log(JSON.stringify({ report: JSON.parse(body) }));
      } catch {
        console.log(JSON.stringify({ report: { error: 'unreadable report: ' + body } }));
      }
      response.writeHead(204);
      response.end();
    });
  } else {
    response.writeHead(404);
    response.end();
  }
});
server.listen(0, '127.0.0.1', () => console.log(JSON.stringify({ port: server.address().port })));
setTimeout(() => process.exit(0), seconds * 1000).unref();

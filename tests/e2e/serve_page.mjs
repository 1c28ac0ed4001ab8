// Serves the posthog-js test page and the library from node_modules on a loopback port, so a
// headless Chromium can load it over http (a page origin other than the collector's, as on a
// real site). Prints the port, then serves until it is killed or --seconds have passed.
//
//   node serve_page.mjs --collector http://127.0.0.1:PORT [--seconds 60]
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const args = Object.fromEntries(
  process.argv.slice(2).reduce((pairs, arg, i, all) => (arg.startsWith('--') ? [...pairs, [arg.slice(2), all[i + 1]]] : pairs), []));
const collector = args.collector;
const seconds = Number(args.seconds ?? 60);
const here = path.dirname(fileURLToPath(import.meta.url));
const modules = process.env.PIPESCOPE_NODE_MODULES ?? path.join(here, 'node_modules');
const library = fs.readFileSync(path.join(modules, 'posthog-js', 'dist', 'array.full.js'));

const page = `<!doctype html>
<html><head><meta charset="utf-8"><title>Pipescope posthog-js test</title></head>
<body><p id="state">loading</p>
<script src="/posthog.js"></script>
<script>
  posthog.init('phc_browser_e2e', {
    api_host: ${JSON.stringify(collector)},
    request_batching: false,      // send each event at once: the test waits for them
    autocapture: false,
    disable_session_recording: true,
    disable_surveys: true,
    advanced_disable_decide: false,
    persistence: 'memory',
    opt_out_useragent_filter: true, // headless Chromium's user agent reads as a bot; posthog-js would drop every event
    loaded: (ph) => {
      ph.capture('checkout_started', { cart_value: 42, currency: 'EUR' });
      document.getElementById('state').textContent = 'sent ' + ph.get_distinct_id();
    },
  });
</script></body></html>`;

const server = http.createServer((request, response) => {
  if (request.url === '/posthog.js') {
    response.writeHead(200, { 'content-type': 'application/javascript' });
    response.end(library);
  } else if (request.url === '/' || request.url.startsWith('/index.html')) {
    response.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    response.end(page);
  } else {
    response.writeHead(404);
    response.end();
  }
});
server.listen(0, '127.0.0.1', () => console.log(JSON.stringify({ port: server.address().port })));
setTimeout(() => process.exit(0), seconds * 1000).unref();

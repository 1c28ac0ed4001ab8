// Serves a posthog-js page that walks through the identity moments a real app has — an event
// before login whose request is slow, identify with person properties, reset() on logout, a
// second person on the same device — and forwards the SDK's requests to a Pipescope collector.
// The forwarding holds back the request that carries `slow_before_login` for a while, the way a
// slow mobile network does, so that it arrives after the $identify that followed it.
//
//   node identity_page.mjs --collector http://127.0.0.1:PORT [--hold-ms 1500] [--seconds 60]
//
// Prints {"port": N} once listening. The page writes "done <distinct ids>" into #state when it
// has sent everything.
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const args = Object.fromEntries(
  process.argv.slice(2).reduce((pairs, arg, i, all) => (arg.startsWith('--') ? [...pairs, [arg.slice(2), all[i + 1]]] : pairs), []));
const collector = new URL(args.collector);
const holdMillis = Number(args['hold-ms'] ?? 1500);
const seconds = Number(args.seconds ?? 60);
const here = path.dirname(fileURLToPath(import.meta.url));
const modules = process.env.PIPESCOPE_NODE_MODULES ?? path.join(here, 'node_modules');
const library = fs.readFileSync(path.join(modules, 'posthog-js', 'dist', 'array.full.js'));

const page = `<!doctype html>
<html><head><meta charset="utf-8"><title>Pipescope identity walk-through</title></head>
<body><p id="state">loading</p>
<script src="/posthog.js"></script>
<script>
  const wait = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  posthog.init('phc_identity_e2e', {
    api_host: location.origin + '/ingest',
    request_batching: false,
    disable_compression: true,      // plain JSON bodies, so the forwarder can tell which one to hold
    autocapture: false,
    capture_pageview: false,
    capture_pageleave: false,
    disable_session_recording: true,
    disable_surveys: true,
    persistence: 'memory',
    opt_out_useragent_filter: true, // headless Chromium reads as a bot; test page only
    loaded: async (ph) => {
      const anonymous = ph.get_distinct_id();
      ph.capture('slow_before_login', { step: 1 });
      await wait(100);
      ph.identify('alice@e2e', { email: 'alice@example.com', plan: 'pro' });
      await wait(100);
      ph.capture('alice_checkout', { step: 2 });
      await wait(100);
      ph.reset();                   // logout: a new anonymous id, the same device
      await wait(100);
      const second = ph.get_distinct_id();
      ph.capture('browsing_after_logout', { step: 3 });
      await wait(100);
      ph.identify('bob@e2e', { email: 'bob@example.com' });
      await wait(100);
      ph.capture('bob_checkout', { step: 4 });
      await wait(holdMillis + 1500);
      document.getElementById('state').textContent = 'done ' + anonymous + ' ' + second;
    },
  });
</script></body></html>`;

function forward(request, response, body) {
  const target = new URL(request.url.replace(/^\/ingest/, '') || '/', collector);
  const headers = { ...request.headers, host: collector.host };
  const upstream = http.request(target, { method: request.method, headers }, (answer) => {
    response.writeHead(answer.statusCode, answer.headers);
    answer.pipe(response);
  });
  upstream.on('error', (error) => {
    response.writeHead(502);
    response.end(String(error));
  });
  upstream.end(body);
}

const server = http.createServer((request, response) => {
  if (request.url === '/posthog.js') {
    response.writeHead(200, { 'content-type': 'application/javascript' });
    response.end(library);
    return;
  }
  if (request.url === '/' || request.url.startsWith('/index.html')) {
    response.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    response.end(page);
    return;
  }
  if (!request.url.startsWith('/ingest')) {
    response.writeHead(404);
    response.end();
    return;
  }
  const chunks = [];
  request.on('data', (chunk) => chunks.push(chunk));
  request.on('end', () => {
    const body = Buffer.concat(chunks);
    const hold = body.includes('slow_before_login') ? holdMillis : 0;
    setTimeout(() => forward(request, response, body), hold);
  });
});
server.listen(0, '127.0.0.1', () => console.log(JSON.stringify({ port: server.address().port })));
setTimeout(() => process.exit(0), seconds * 1000).unref();

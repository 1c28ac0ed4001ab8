// Sends a known set of events through the real server SDKs, posthog-node and
// @segment/analytics-node (installed from the npm registry), to a Pipescope collector, and prints
// what it sent as one JSON object so the test can check every event arrived with the right
// stream and distinct id.
//
//   node send_with_sdks.mjs --host http://127.0.0.1:PORT [--events N] [--token phc_x] [--write-key wk]
import { PostHog } from 'posthog-node';
import { Analytics } from '@segment/analytics-node';
import { randomUUID } from 'node:crypto';

const args = Object.fromEntries(
  process.argv.slice(2).reduce((pairs, arg, i, all) => (arg.startsWith('--') ? [...pairs, [arg.slice(2), all[i + 1]]] : pairs), []));
const host = args.host;
if (!host) {
  console.error('send_with_sdks: --host is required');
  process.exit(2);
}
const count = Number(args.events ?? 20);
const token = args.token ?? 'phc_pipescope_e2e';
const writeKey = args['write-key'] ?? 'wk_pipescope_e2e';
const sent = { posthog: [], segment: [] };

// posthog-node: captures (batched to /batch/), an identify and an alias.
const posthog = new PostHog(token, { host, flushAt: 7, flushInterval: 50, disableGeoip: true, fetchRetryCount: 3 });
posthog.on('error', (error) => console.error('posthog-node error:', error?.message ?? error));
for (let i = 0; i < count; ++i) {
  const uuid = randomUUID();
  posthog.capture({ distinctId: `node-user-${i % 5}`, event: 'order_completed', uuid,
                    properties: { amount: 10 + i, currency: 'EUR' } });
  sent.posthog.push({ uuid, name: 'order_completed', distinct_id: `node-user-${i % 5}` });
}
posthog.identify({ distinctId: 'node-user-0', properties: { plan: 'pro' } });
sent.posthog.push({ name: '$identify', distinct_id: 'node-user-0' });
posthog.alias({ distinctId: 'node-user-0', alias: 'legacy-42' });
sent.posthog.push({ name: '$create_alias', distinct_id: 'node-user-0', alias: 'legacy-42' });
await posthog.shutdown(10000);

// @segment/analytics-node: track, identify, page, alias, all through /v1/batch.
const analytics = new Analytics({ writeKey, host, flushAt: 5, flushInterval: 50, maxRetries: 3 });
analytics.on('error', (error) => console.error('analytics-node error:', error?.reason?.message ?? error?.code ?? error));
const segment = (type, message, name) => {
  const messageId = randomUUID();
  analytics[type]({ ...message, messageId });
  sent.segment.push({ messageId, type, name, distinct_id: message.userId ?? message.anonymousId });
};
for (let i = 0; i < count; ++i)
  segment('track', { userId: `seg-user-${i % 4}`, event: 'order_completed', properties: { amount: i, currency: 'USD' } },
          'order_completed');
segment('identify', { userId: 'seg-user-0', anonymousId: 'seg-anon-0', traits: { plan: 'team' } }, '$identify');
segment('page', { anonymousId: 'seg-anon-0', name: 'Pricing', properties: { path: '/pricing' } }, '$pageview');
segment('alias', { userId: 'seg-user-9', previousId: 'seg-user-0' }, '$create_alias');
await analytics.closeAndFlush({ timeout: 10000 });

console.log(JSON.stringify(sent));

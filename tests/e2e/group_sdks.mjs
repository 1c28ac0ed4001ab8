// posthog-node's group analytics against a Pipescope collector: groupIdentify for a company,
// then events of a user that belong to it. Prints what it sent as JSON.
//
//   node group_sdks.mjs --host http://127.0.0.1:PORT [--token phc_x]
import { PostHog } from 'posthog-node';

const args = Object.fromEntries(
  process.argv.slice(2).reduce((pairs, arg, i, all) => (arg.startsWith('--') ? [...pairs, [arg.slice(2), all[i + 1]]] : pairs), []));
if (!args.host) {
  console.error('group_sdks: --host is required');
  process.exit(2);
}
const posthog = new PostHog(args.token ?? 'phc_groups_e2e', { host: args.host, flushAt: 1, flushInterval: 0, disableGeoip: true });
posthog.on('error', (error) => console.error('posthog-node error:', error?.message ?? error));
posthog.groupIdentify({ groupType: 'company', groupKey: 'acme', properties: { name: 'Acme Inc', plan: 'enterprise' } });
posthog.capture({ distinctId: 'member-1', event: 'invoice_paid', groups: { company: 'acme' }, properties: { amount: 120 } });
posthog.capture({ distinctId: 'member-1', event: 'report_exported', groups: { company: 'acme' } });
await posthog.shutdown();
console.log(JSON.stringify({ group: { type: 'company', key: 'acme' }, member: 'member-1', events: 3 }));

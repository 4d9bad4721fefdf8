/**
 * `npm run replication -- <command>`: two regions kept in step by PostgreSQL logical replication,
 * both directions (src/db/replication.ts, DESIGN.md "Two regions").
 */
import { parseArgs } from 'node:util';
import pg from 'pg';
import { pino } from 'pino';
import { loadConfig } from '../src/config.ts';
import { openCliDatabase, type CliDatabase } from '../src/db/cli-database.ts';
import { ReplicationPrerequisiteError, replicationStatus, setupTwoRegions } from '../src/db/replication.ts';
import { err, out, runCli, UsageError } from './lib/cli.ts';

const USAGE = `usage: npm run replication -- <command> [options]

  setup --local <url> --remote <url> [--rollups on|off]
                  both directions between two regions' databases: on each, the publication
                  events_regions (inserts into events, through the partition root), the apply-side
                  triggers that skip an event the region stored already, and a subscription to the
                  other (origin = none). Safe to repeat. Each URL must be reachable from the other
                  region's server as written (it is stored in the subscription).
                  --rollups off: applied events are not added to event_counts (default on; off only
                  where every region runs ROLLUPS=off: the counting about doubles the apply's cost).
  status [--local <url>] [--remote <url>]
                  per database: each subscription (enabled, apply worker running, errors, last message)
                  and each slot the other region reads (active, lag in bytes and time)

Without --local, the database is found as the service finds it: DATABASE_URL, else the embedded
PostgreSQL of the service running on DATA_DIR. Both servers need wal_level = logical (PostgreSQL 16+).
Exit codes: 0 ok (status: every subscription enabled with its worker running), 1 database error or
a subscription not running (status), 2 usage or configuration error, 3 prerequisite missing (setup).`;

const EXIT_PREREQUISITE = 3;

async function openLocal(url: string | undefined): Promise<CliDatabase> {
  if (url !== undefined) return { url, close: async () => {} };
  return openCliDatabase(loadConfig(process.env), pino({ level: 'warn' }, pino.destination(2)));
}

async function withClient<T>(url: string, use: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  client.on('error', () => {});
  await client.connect();
  try {
    return await use(client);
  } finally {
    await client.end();
  }
}

async function printStatus(label: string, client: pg.Client): Promise<boolean> {
  const status = await replicationStatus(client);
  let healthy = true;
  if (status.subscriptions.length === 0) out(`${label}\tno subscription (run setup)`);
  for (const s of status.subscriptions) {
    const running = s.enabled && s.workerPid !== null;
    healthy &&= running;
    out(`${label}\tsubscription ${s.name}\t${!s.enabled ? 'disabled' : running ? 'streaming' : 'worker not running'}\tapply errors ${s.applyErrors}\tsync errors ${s.syncErrors}\tlast message ${s.lastMessageAt?.toISOString() ?? 'never'}`);
  }
  for (const slot of status.slots) {
    out(`${label}\tslot ${slot.name}\t${slot.active ? 'active' : 'inactive'}\tlag ${slot.lagBytes} bytes\treplay lag ${slot.replayLag ?? '-'}\twal ${slot.walStatus ?? '-'}`);
  }
  return healthy;
}

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { local: { type: 'string' }, remote: { type: 'string' }, rollups: { type: 'string', default: 'on' }, help: { type: 'boolean', short: 'h', default: false } },
  });
  if (values.help) {
    out(USAGE);
    return 0;
  }
  const [command, ...extra] = positionals;
  if (command !== 'setup' && command !== 'status') throw new UsageError(command === undefined ? 'no command given' : `unknown command "${command}"`);
  if (extra.length > 0) throw new UsageError(`unexpected arguments: ${extra.join(' ')}`);
  if (command === 'setup' && (values.local === undefined || values.remote === undefined)) throw new UsageError('setup needs --local <url> and --remote <url>');
  if (values.rollups !== 'on' && values.rollups !== 'off') throw new UsageError(`--rollups must be on or off, not "${values.rollups}"`);
  const local = await openLocal(values.local);
  try {
    if (command === 'setup') {
      const remoteUrl = values.remote!;
      try {
        const steps = await withClient(local.url, (l) => withClient(remoteUrl, (r) => setupTwoRegions(l, r, local.url, remoteUrl, values.rollups === 'on')));
        for (const step of steps) out(`${step.database}\t${step.step}\t${step.outcome}`);
        return 0;
      } catch (error) {
        if (!(error instanceof ReplicationPrerequisiteError)) throw error;
        err(`replication: ${error.message}`);
        return EXIT_PREREQUISITE;
      }
    }
    let healthy = await withClient(local.url, (client) => printStatus('local', client));
    if (values.remote !== undefined) healthy = (await withClient(values.remote, (client) => printStatus('remote', client))) && healthy;
    return healthy ? 0 : 1;
  } finally {
    await local.close();
  }
}

await runCli(() => main(process.argv.slice(2)), USAGE, (error) => {
  const code = (error as { code?: unknown }).code;
  return `replication: ${error instanceof Error ? error.message : String(error)}${typeof code === 'string' ? ` (${code})` : ''}`;
});

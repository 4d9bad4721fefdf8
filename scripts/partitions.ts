/**
 * `npm run partitions -- <command>`: the daily partitions of `events` (migration 0004,
 * src/db/partition-maintenance.ts), in the database the service uses (found as `npm run events` finds it).
 */
import { parseArgs } from 'node:util';
import pg from 'pg';
import { pino } from 'pino';
import { systemClock } from '../src/clock.ts';
import { loadConfig } from '../src/config.ts';
import { openCliDatabase } from '../src/db/cli-database.ts';
import { PartitionMaintenance } from '../src/db/partition-maintenance.ts';
import { out, runCli, UsageError } from './lib/cli.ts';

const USAGE = `usage: npm run partitions -- <command>

  status          each partition of events: its range and estimated rows; the default partition's exact count
  maintain        what the service does every PARTITION_MAINTENANCE_INTERVAL_MS, now: create today's and
                  PARTITION_DAYS_AHEAD more, and with RETENTION_DAYS drop the partitions past it
  split-default   a daily partition for every day the default partition holds rows of, moving them there
                  (then retention can drop the old ones whole): runbook.md "Default partition holds events"

Finds the database as the service does: DATABASE_URL, else the embedded PostgreSQL of the service
running on DATA_DIR. Safe beside running services: one maintenance run at a time (an advisory lock;
a second one reports "skipped").
Exit codes: 0 ok, 1 database error, 2 usage or configuration error.`;

const COMMANDS = new Set(['status', 'maintain', 'split-default']);

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args: argv, allowPositionals: true, options: { help: { type: 'boolean', short: 'h', default: false } } });
  if (values.help) {
    out(USAGE);
    return 0;
  }
  const [command, ...extra] = positionals;
  if (command === undefined || !COMMANDS.has(command)) throw new UsageError(command === undefined ? 'no command given' : `unknown command "${command}"`);
  if (extra.length > 0) throw new UsageError(`unexpected arguments: ${extra.join(' ')}`);
  const config = loadConfig(process.env);
  const logger = pino({ level: 'warn' }, pino.destination(2));
  const database = await openCliDatabase(config, logger);
  const pool = new pg.Pool({ connectionString: database.url, max: 1 });
  try {
    if (command === 'status') {
      const { rows } = await pool.query<{ name: string; bound: string; estimate: string }>(
        `SELECT c.relname AS name, pg_get_expr(c.relpartbound, c.oid) AS bound, greatest(c.reltuples, 0)::bigint AS estimate
           FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'events'::regclass ORDER BY 1`,
      );
      for (const row of rows) {
        const exact = row.bound === 'DEFAULT' ? (await pool.query<{ n: string }>(`SELECT count(*) AS n FROM "${row.name}"`)).rows[0]!.n : undefined;
        out(`${row.name}\t${row.bound}\t${exact === undefined ? `~${row.estimate} rows` : `${exact} rows`}`);
      }
      return 0;
    }
    const maintenance = new PartitionMaintenance(pool, config.partitions, systemClock, logger);
    const report = command === 'maintain' ? await maintenance.runOnce() : await maintenance.splitDefault();
    out(JSON.stringify(report));
    return 0;
  } finally {
    await pool.end();
    await database.close();
  }
}

await runCli(() => main(process.argv.slice(2)), USAGE, (error) => {
  const code = (error as { code?: unknown }).code;
  return `partitions: ${error instanceof Error ? error.message : String(error)}${typeof code === 'string' ? ` (${code})` : ''}`;
});

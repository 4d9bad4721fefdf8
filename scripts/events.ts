/**
 * `npm run events -- <command>`: look at what the service stored, in the database it uses
 * (DATABASE_URL, else the embedded PostgreSQL under DATA_DIR, found as `npm run keys` finds it).
 * See USAGE for commands and exit codes.
 */
import { parseArgs } from 'node:util';
import pg from 'pg';
import { pino } from 'pino';
import { loadConfig } from '../src/config.ts';
import { openCliDatabase } from '../src/db/cli-database.ts';
import { out, runCli, UsageError } from './lib/cli.ts';

const USAGE = `usage: npm run events -- <command> [options]

  tail [--tenant <t>] [--limit N]   the last N (default 20) events received, newest first, one JSON
                                    object per line, exactly as stored (jsonb text, digits kept)
  url                               the connection URL of that database, for psql "$(npm run -s events -- url)"
                                    (it holds the password: do not paste it anywhere)

Finds the database as the service does: DATABASE_URL, else the embedded PostgreSQL of the service
running on DATA_DIR (default ./.data), else starts that one for the command. Without --tenant, tail
sorts the whole table (no index on received_at): fine for a look, slow on a large table.
Exit codes: 0 ok, 1 database error, 2 usage or configuration error.`;


function positiveInteger(value: string | undefined, name: string, fallback: number): number {
  if (value === undefined) return fallback;
  const parsed = Number(value);
  if (!Number.isSafeInteger(parsed) || parsed < 1 || parsed > 10_000) throw new UsageError(`--${name} must be an integer from 1 to 10000, not "${value}"`);
  return parsed;
}

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { tenant: { type: 'string' }, limit: { type: 'string' }, help: { type: 'boolean', short: 'h', default: false } },
  });
  if (values.help) {
    out(USAGE);
    return 0;
  }
  const [command, ...extra] = positionals;
  if (command !== 'tail' && command !== 'url') throw new UsageError(command === undefined ? 'no command given' : `unknown command "${command}"`);
  if (extra.length > 0) throw new UsageError(`unexpected arguments: ${extra.join(' ')}`);
  const limit = positiveInteger(values.limit, 'limit', 20);
  const config = loadConfig(process.env);
  const logger = pino({ level: 'warn' }, pino.destination(2));
  const database = await openCliDatabase(config, logger);
  try {
    if (command === 'url') {
      out(database.url);
      return 0;
    }
    const client = new pg.Client({ connectionString: database.url });
    await client.connect();
    try {
      const { rows } = await client.query<{ line: string }>(
        `select to_jsonb(e)::text as line from events e
          where $1::text is null or tenant = $1
          order by received_at desc limit $2`,
        [values.tenant ?? null, limit],
      );
      for (const row of rows) out(row.line);
    } finally {
      await client.end();
    }
    return 0;
  } finally {
    await database.close();
  }
}

await runCli(() => main(process.argv.slice(2)), USAGE, (error) => {
  const code = (error as { code?: unknown }).code;
  return `events: ${error instanceof Error ? error.message : String(error)}${typeof code === 'string' ? ` (${code})` : ''}`;
});

/**
 * `npm run dlq -- <command>`: inspect the dead-letter queue under DATA_DIR/dlq, and re-drive it
 * into the database once the cause of the failures is fixed. See USAGE for commands and exit codes.
 */
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { loadConfig, type Config } from '../src/config.ts';
import { openCliDatabase } from '../src/db/cli-database.ts';
import { err, EXIT_USAGE, out, runCli, UsageError } from './lib/cli.ts';
import { createPool } from '../src/db/pool.ts';
import { deadLetterDirectory, readDeadLetterFiles, type DeadLetterFile } from '../src/dlq/dlq-files.ts';
import { RedriveBusyError } from '../src/dlq/redrive-lock.ts';
import { redrive, RedriveInterruptedError, type RedriveResult } from '../src/dlq/redrive.ts';
import { PostgresCopySink } from '../src/sink/postgres-copy-sink.ts';
import { reportHeadAnomalies } from '../src/audit/head-anomalies.ts';

const EXIT_OK = 0;
const EXIT_STILL_FAILING = 1;

const USAGE = `usage: npm run dlq -- <command> [options]

  list [--limit N] [--json]        one line per dead-lettered event: time, id, tenant, SQLSTATE, attempts, error
  stats [--json]                   files, records, bytes, and records by SQLSTATE
  redrive [--batch-size N] [--json]
                                   replay every record into the service's database; records that
                                   still fail stay in the DLQ; running it twice stores nothing twice

Reads DATA_DIR (default ./.data) and finds the database like the service: DATABASE_URL, else the
embedded PostgreSQL of the service running on DATA_DIR (else it starts that one itself, for the
re-drive only). It never migrates a database a service runs on. Exit codes: 0 ok, 1 records still failing or the
re-drive stopped, 2 usage or configuration error.`;



function positiveInteger(value: string | undefined, name: string, fallback: number): number {
  if (value === undefined) return fallback;
  const parsed = Number(value);
  if (!Number.isSafeInteger(parsed) || parsed < 1) throw new UsageError(`--${name} must be a positive integer, not "${value}"`);
  return parsed;
}

function reportDamage(files: readonly DeadLetterFile[]): void {
  for (const file of files) {
    for (const line of file.corruptLines) {
      err(`warning: ${file.path}:${line.lineNumber} is not a dead-letter record; it is kept as it is and never replayed. Inspect it by hand`);
    }
    if (file.tornTail !== null) {
      err(`warning: ${file.path} ends in a line cut short by a crash mid-append; it is skipped (the append never completed, so its batch was never settled)`);
    }
  }
}

async function list(directory: string, limit: number, json: boolean): Promise<number> {
  const files = await readDeadLetterFiles(directory);
  reportDamage(files);
  let shown = 0;
  for (const record of files.flatMap((file) => file.records)) {
    if (shown >= limit) break;
    shown += 1;
    if (json) {
      out(JSON.stringify(record));
      continue;
    }
    const message = record.error.message.replace(/\s+/g, ' ');
    out(
      `${record.dead_lettered_at}  ${record.event.id ?? '-'}  ${record.event.tenant ?? '-'}  ${record.error.sqlstate ?? '-----'}  attempts=${record.attempts}  ${message}`,
    );
  }
  if (!json && shown === 0) out(`the dead-letter queue in ${directory} is empty`);
  return EXIT_OK;
}

async function stats(directory: string, json: boolean): Promise<number> {
  const files = await readDeadLetterFiles(directory);
  reportDamage(files);
  const records = files.flatMap((file) => file.records);
  const bySqlstate: Record<string, number> = {};
  for (const record of records) {
    const key = record.error.sqlstate ?? 'none';
    bySqlstate[key] = (bySqlstate[key] ?? 0) + 1;
  }
  const times = records.map((record) => record.dead_lettered_at).sort();
  const summary = {
    directory,
    files: files.length,
    records: records.length,
    bytes: files.reduce((sum, file) => sum + file.bytes, 0),
    bySqlstate,
    corruptLines: files.reduce((sum, file) => sum + file.corruptLines.length, 0),
    tornLines: files.filter((file) => file.tornTail !== null).length,
    oldest: times[0] ?? null,
    newest: times.at(-1) ?? null,
  };
  if (json) {
    out(JSON.stringify(summary));
    return EXIT_OK;
  }
  out(`directory: ${summary.directory}`);
  out(`files: ${summary.files}, records: ${summary.records}, bytes: ${summary.bytes}`);
  if (summary.oldest) out(`oldest: ${summary.oldest}, newest: ${summary.newest}`);
  for (const [sqlstate, count] of Object.entries(bySqlstate).sort(([, a], [, b]) => b - a)) out(`  ${sqlstate}: ${count}`);
  if (summary.corruptLines > 0 || summary.tornLines > 0) out(`corrupt lines: ${summary.corruptLines}, torn lines: ${summary.tornLines}`);
  return EXIT_OK;
}

function printResult(result: RedriveResult): void {
  out(
    `re-drive: ${result.files} files, ${result.replayed} replayed, ${result.stored} stored, ${result.duplicates} already stored, ${result.stillFailing} still failing`,
  );
}

async function redriveCommand(config: Config, directory: string, batchSize: number, json: boolean): Promise<number> {
  const logger = pino({ level: 'warn' }, pino.destination(2));
  // DATABASE_URL, else the embedded server under DATA_DIR: the same lookup as `npm run keys`.
  const database = await openCliDatabase(config, logger);
  const pool = createPool(database.url, config.db, logger);
  const abort = new AbortController();
  const onSignal = () => abort.abort(new Error('interrupted by a signal'));
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    const result = await redrive({
      directory,
      sink: new PostgresCopySink(pool, { copyTimeoutMs: config.db.copyTimeoutMs, rollups: config.db.rollups, auditChain: config.audit.chain ? { onHeadAnomalies: reportHeadAnomalies(logger) } : undefined }),
      batchSize,
      clock: { now: () => Date.now() },
      signal: abort.signal,
      onFile: (file) => {
        if (!json) {
          out(`${file.path}: ${file.replayed} replayed, ${file.stored} stored, ${file.duplicates} already stored, ${file.stillFailing} still failing`);
        }
      },
    });
    if (json) out(JSON.stringify(result));
    else printResult(result);
    if (result.corruptLines > 0) err(`warning: ${result.corruptLines} lines are not dead-letter records; they stay in their files. See \`npm run dlq -- stats\``);
    if (result.stillFailing === 0) return EXIT_OK;
    err(`${result.stillFailing} records still fail and stay in the DLQ with their latest error: see \`npm run dlq -- list\`, fix the cause, and re-drive again`);
    return EXIT_STILL_FAILING;
  } catch (error) {
    if (error instanceof RedriveBusyError) {
      err(error.message);
      return EXIT_USAGE;
    }
    if (!(error instanceof RedriveInterruptedError)) throw error;
    if (json) out(JSON.stringify({ ...error.partial, interrupted: error.message }));
    else printResult(error.partial);
    err(error.message);
    return EXIT_STILL_FAILING;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await pool.end();
    await database.close();
  }
}

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      limit: { type: 'string' },
      'batch-size': { type: 'string' },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    out(USAGE);
    return EXIT_OK;
  }
  const [command, ...extra] = positionals;
  if (extra.length > 0) throw new UsageError(`unexpected arguments: ${extra.join(' ')}`);
  const config = loadConfig(process.env);
  const directory = deadLetterDirectory(config.dataDir);
  switch (command) {
    case 'list':
      return list(directory, positiveInteger(values.limit, 'limit', Number.MAX_SAFE_INTEGER), values.json);
    case 'stats':
      return stats(directory, values.json);
    case 'redrive':
      return redriveCommand(config, directory, positiveInteger(values['batch-size'], 'batch-size', config.batch.maxSize), values.json);
    default:
      throw new UsageError(command === undefined ? 'no command given' : `unknown command "${command}"`);
  }
}

await runCli(() => main(process.argv.slice(2)), USAGE, (error) =>
  `dlq: failed unexpectedly; nothing was removed from the DLQ. ${error instanceof Error ? error.stack : String(error)}`,
);

/**
 * `npm test` entry: start one embedded PostgreSQL for the whole run (unless DATABASE_URL points
 * at one), then run every *.test.ts under test/ with Node's test runner. Each test file makes its
 * own database on that server, so files are isolated from each other.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { startEmbeddedPostgres, type EmbeddedDatabase } from '../src/db/embedded-postgres.ts';

const testRoot = path.dirname(new URL(import.meta.url).pathname);

async function findTestFiles(directory: string): Promise<string[]> {
  const entries = await readdir(directory, { withFileTypes: true });
  const files: string[] = [];
  for (const entry of entries) {
    const full = path.join(directory, entry.name);
    if (entry.isDirectory()) files.push(...(await findTestFiles(full)));
    else if (entry.name.endsWith('.test.ts')) files.push(full);
  }
  return files.sort();
}

const filter = process.argv.slice(2);
const files = (await findTestFiles(testRoot)).filter((file) => filter.length === 0 || filter.some((f) => file.includes(f)));

let embedded: EmbeddedDatabase | undefined;
let scratch: string | undefined;
const env = { ...process.env };
if (!env.DATABASE_URL) {
  scratch = await mkdtemp(path.join(tmpdir(), 'ingest-test-pg-'));
  embedded = await startEmbeddedPostgres({
    dataDir: path.join(scratch, 'postgres'),
    logger: pino({ level: 'warn' }),
    ephemeral: true,
  });
  env.DATABASE_URL = embedded.url;
}

const child = spawn(process.execPath, ['--import', 'tsx', '--test', '--test-concurrency=1', ...files], {
  stdio: 'inherit',
  env,
});
const code: number = await new Promise((resolve) => child.on('exit', (exitCode, signal) => resolve(exitCode ?? (signal ? 1 : 0))));
await embedded?.stop();
if (scratch) await rm(scratch, { recursive: true, force: true });
process.exit(code);

/**
 * `npm test` entry: start one embedded PostgreSQL for the whole run (unless DATABASE_URL points
 * at one), then run every *.test.ts under test/ and under each workspace package's test/
 * (packages/<name>/test) with Node's test runner. Each test file makes its
 * own database on that server, so files are isolated from each other.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { startEmbeddedPostgres, type EmbeddedDatabase } from '../src/db/embedded-postgres.ts';

const testRoot = path.dirname(new URL(import.meta.url).pathname);
const packagesRoot = path.join(testRoot, '..', 'packages');

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

const PER_TEST_TIMEOUT_MS = 180_000;
const WHOLE_RUN_TIMEOUT_MS = 20 * 60_000;

const filter = process.argv.slice(2);
/** Every workspace package's test/ directory (packages/<name>/test). */
async function packageTestDirectories(): Promise<string[]> {
  const entries = await readdir(packagesRoot, { withFileTypes: true }).catch(() => []);
  const directories: string[] = [];
  for (const entry of entries) {
    if (!entry.isDirectory()) continue;
    const directory = path.join(packagesRoot, entry.name, 'test');
    const found = await readdir(directory).then(() => true, () => false);
    if (found) directories.push(directory);
  }
  return directories.sort();
}

const roots = [testRoot, ...(await packageTestDirectories())];
const allFiles = (await Promise.all(roots.map((root) => findTestFiles(root)))).flat();
const files = allFiles.filter((file) => filter.length === 0 || filter.some((f) => file.includes(f)));

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

// --test-force-exit: a test file's process exits once its tests are done, even if a handle
// (a socket of a cut proxy, say) would keep it in Node's exit-time cleanup.
const child = spawn(
  process.execPath,
  ['--import', 'tsx', '--test', '--test-concurrency=1', '--test-force-exit', `--test-timeout=${PER_TEST_TIMEOUT_MS}`, ...files],
  { stdio: 'inherit', env },
);
// A run that hangs must fail, not stall CI for its 90 minutes.
const watchdog = setTimeout(() => {
  process.stderr.write(`test run exceeded ${WHOLE_RUN_TIMEOUT_MS / 60_000} minutes; stopping it\n`);
  child.kill('SIGKILL');
}, WHOLE_RUN_TIMEOUT_MS);
const code: number = await new Promise((resolve) => child.on('exit', (exitCode, signal) => resolve(exitCode ?? (signal ? 1 : 0))));
clearTimeout(watchdog);
await embedded?.stop();
if (scratch) await rm(scratch, { recursive: true, force: true });
process.exit(code);

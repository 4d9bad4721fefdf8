/**
 * Mode (d), the floor of database cost: the same rows, encoded by the service's own encoder,
 * loaded with one `psql \copy` (or, without psql, one COPY through pg-copy-streams).
 */
import { spawn } from 'node:child_process';
import { createReadStream, createWriteStream } from 'node:fs';
import { once } from 'node:events';
import { performance } from 'node:perf_hooks';
import { pipeline } from 'node:stream/promises';
import pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { v7 as uuidv7 } from 'uuid';
import { EVENT_COLUMNS, encodeEventRow } from '../../src/event/copy-row.ts';
import { auditEventSchema } from '../../src/event/schema.ts';
import { makeEvent } from './event-body.ts';

export interface CopyRun {
  readonly method: 'psql \\copy' | 'pg-copy-streams COPY (psql not on PATH)';
  readonly rows: number;
  readonly seconds: number;
}

/** Write `count` COPY text rows (the benchmark's events, fresh ids) to `file`. */
export async function writeRowsFile(file: string, count: number): Promise<void> {
  const out = createWriteStream(file);
  const receivedAt = new Date().toISOString();
  for (let i = 0; i < count; i++) {
    const event = auditEventSchema.parse(makeEvent(i % 256));
    if (!out.write(encodeEventRow(event, uuidv7(), receivedAt))) await once(out, 'drain');
  }
  out.end();
  await once(out, 'finish');
}

export async function copyRows(url: string, file: string, rows: number, usePsql: boolean, timeoutMs: number): Promise<CopyRun> {
  const columns = EVENT_COLUMNS.join(', ');
  const started = performance.now();
  if (usePsql) {
    const command = `\\copy events (${columns}) from '${file.replace(/'/g, "''")}'`;
    await runPsql(url, command, timeoutMs);
    return { method: 'psql \\copy', rows, seconds: (performance.now() - started) / 1000 };
  }
  const client = new pg.Client({ connectionString: url, application_name: 'bench-copy' });
  await client.connect();
  try {
    await pipeline(createReadStream(file), client.query(copyFrom(`COPY events (${columns}) FROM STDIN`)), {
      signal: AbortSignal.timeout(timeoutMs),
    });
  } finally {
    await client.end();
  }
  return { method: 'pg-copy-streams COPY (psql not on PATH)', rows, seconds: (performance.now() - started) / 1000 };
}

function runPsql(url: string, command: string, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('psql', ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', url, '-c', command], {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, PGCONNECT_TIMEOUT: '10' },
    });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve();
      else reject(new Error(`psql failed (${code ?? signal}): ${stderr.trim()}`));
    });
  });
}

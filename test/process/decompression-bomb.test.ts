import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { request } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { constants, createGzip } from 'node:zlib';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { startServerProcess, type ServerProcess } from '../helpers/server-process.ts';
import { sampleEvent } from '../helpers/service.ts';

const GiB = 1024 ** 3;

/** A gzip stream of 1 GiB of zeros: about 1 MiB on the wire. */
async function gzipBomb(expandedBytes: number): Promise<Buffer> {
  const gzip = createGzip({ level: constants.Z_BEST_COMPRESSION });
  const chunks: Buffer[] = [];
  gzip.on('data', (chunk: Buffer) => chunks.push(chunk));
  const zeros = Buffer.alloc(1024 * 1024);
  for (let written = 0; written < expandedBytes; written += zeros.length) {
    if (!gzip.write(zeros)) await new Promise((resolve) => gzip.once('drain', resolve));
  }
  await new Promise((resolve) => gzip.end(resolve));
  return Buffer.concat(chunks);
}

/** Peak resident set size of a process so far, in bytes (VmHWM). */
async function peakRss(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/^VmHWM:\s+(\d+) kB$/m.exec(status)![1]) * 1024;
}

function post(origin: string, path: string, body: Buffer, headers: Record<string, string>): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(`${origin}${path}`, { method: 'POST', headers: { ...headers, 'content-length': String(body.length) } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (text += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
    });
    // The server may answer 413 and close before the whole body is sent.
    req.on('error', reject);
    req.end(body);
  });
}

describe('a decompression bomb', () => {
  let db: TestDatabase;
  let server: ServerProcess;
  before(async () => {
    db = await createTestDatabase();
    server = await startServerProcess({ DATABASE_URL: db.url, DATA_DIR: `/tmp/ingest-bomb-${process.pid}` });
  });
  after(async () => {
    server.child.kill('SIGTERM');
    await server.exited;
    await db.drop();
  });

  it('expanding to 1 GiB is refused with 413 in bounded memory, and the service keeps serving', async (t) => {
    const bomb = await gzipBomb(GiB);
    assert.ok(bomb.length < 2 * 1024 * 1024, `the bomb is ${bomb.length} bytes on the wire`);
    const headers = { 'content-type': 'application/json', 'content-encoding': 'gzip' };
    // Warm up both routes so the baseline peak includes ordinary request handling.
    for (let i = 0; i < 50; i += 1) {
      await post(server.origin, '/event', Buffer.from(JSON.stringify(sampleEvent())), { 'content-type': 'application/json' });
    }
    const pid = server.child.pid!;
    const before = await peakRss(pid);
    for (const path of ['/event', '/events']) {
      const response = await post(server.origin, path, bomb, headers);
      assert.equal(response.status, 413, `${path}: ${response.body}`);
      assert.equal((JSON.parse(response.body) as { code: string }).code, 'INGEST_ERR_BODY_TOO_LARGE');
    }
    const growthMiB = ((await peakRss(pid)) - before) / 2 ** 20;
    t.diagnostic(`bomb: ${(bomb.length / 2 ** 20).toFixed(2)} MiB on the wire, 1 GiB expanded; server peak RSS growth ${growthMiB.toFixed(1)} MiB`);
    assert.ok(growthMiB < 32, `peak RSS grew ${growthMiB.toFixed(1)} MiB`);
    const after = await post(server.origin, '/event', Buffer.from(JSON.stringify(sampleEvent())), { 'content-type': 'application/json' });
    assert.equal(after.status, 202, 'the service keeps serving');
  });
});

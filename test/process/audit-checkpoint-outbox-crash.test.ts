/**
 * The webhook's outbox across a crash: the real server (a child process) signs a checkpoint while
 * its receiver is away, is SIGKILLed, and the next start delivers the line it left in
 * DATA_DIR/audit-checkpoints-outbox.ndjson; the receiver's file then verifies.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { generateSigningKeyPair } from '../../src/audit/checkpoints.ts';
import { readOutboxEntries, Receiver } from '../helpers/checkpoint-receiver.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { runScript } from '../helpers/run-script.ts';
import { startServerProcess } from '../helpers/server-process.ts';
import { sampleEvent, waitFor } from '../helpers/service.ts';
import { TcpProxy } from '../helpers/tcp-proxy.ts';

describe('audit checkpoint outbox: a SIGKILL leaves the waiting lines, the next start delivers them', () => {
  let db: TestDatabase;
  let dir: string;
  before(async () => {
    db = await createTestDatabase();
    dir = await mkdtemp(path.join(tmpdir(), 'outbox-crash-'));
  });
  after(async () => {
    await db.drop();
    await rm(dir, { recursive: true, force: true });
  });

  it('signed while the receiver was away, killed, delivered after the restart; the receiver’s file verifies', async () => {
    const { privateKeyPem, publicKeyPem } = generateSigningKeyPair();
    const keyFile = path.join(dir, 'signing.pem');
    const publicFile = path.join(dir, 'signing.pub.pem');
    await writeFile(keyFile, privateKeyPem, { mode: 0o600 });
    await writeFile(publicFile, publicKeyPem);
    const dataDir = path.join(dir, 'data');
    const outboxFile = path.join(dataDir, 'audit-checkpoints-outbox.ndjson');
    const stored = path.join(dir, 'received.ndjson');
    const receiver = new Receiver(stored);
    const proxy = new TcpProxy({ host: '127.0.0.1', port: await receiver.listen() });
    await proxy.start();
    await proxy.cut();
    const environment = {
      DATABASE_URL: db.url,
      DATA_DIR: dataDir,
      AUDIT_CHAIN: 'on',
      AUDIT_SIGNING_KEY_FILE: keyFile,
      AUDIT_CHECKPOINT_WEBHOOK_URL: `http://127.0.0.1:${proxy.port}/checkpoints`,
      AUDIT_CHECKPOINT_WEBHOOK_RETRY_MAX_DELAY_MS: '50',
      AUDIT_CHECKPOINT_EVENTS: '25',
      AUDIT_CHECKPOINT_INTERVAL_MS: '600000',
      BATCH_MAX_SIZE: '25',
    };
    const headSeq = async () => (await db.pool.query<{ seq: string }>(`SELECT seq::text FROM audit_chain_heads WHERE tenant = 'outbox-crash'`)).rows[0]?.seq;
    const outboxTenants = async () => (await readOutboxEntries(outboxFile)) ?? [];
    try {
      const first = await startServerProcess(environment);
      try {
        const body = Array.from({ length: 25 }, () => JSON.stringify(sampleEvent({ id: randomUUID(), tenant: 'outbox-crash' }))).join('\n');
        const answer = await fetch(`${first.origin}/events`, { method: 'POST', headers: { 'content-type': 'application/x-ndjson' }, body });
        assert.equal(answer.status, 202, await answer.text());
        await waitFor(async () => (await db.count(`tenant = 'outbox-crash'`)) === 25, 20_000, 'the events stored');
        const seq = await headSeq();
        await waitFor(async () => (await outboxTenants()).join() === `outbox-crash ${seq}`, 20_000, 'the signed head in the outbox');
        await waitFor(() => first.logs.some((line) => line.includes('could not deliver signed audit checkpoints')), 10_000, 'a failed POST');
      } finally {
        first.child.kill('SIGKILL');
        await first.exited;
      }
      const seq = await headSeq();
      assert.deepEqual(await outboxTenants(), [`outbox-crash ${seq}`], 'the crash left the line');
      assert.equal(receiver.requests.length, 0);

      await proxy.restore();
      const second = await startServerProcess(environment);
      try {
        await waitFor(async () => (await receiver.storedLines()).length === 1, 20_000, 'the line delivered after the restart');
        assert.ok(second.logs.some((line) => line.includes('an earlier run did not deliver')), 'the start says it found them');
        await waitFor(async () => (await outboxTenants()).length === 0, 10_000, 'the outbox emptied');
      } finally {
        second.child.kill('SIGTERM');
        assert.equal((await second.exited).code, 0, second.logs.slice(-5).join('\n'));
      }
      assert.deepEqual(
        (await receiver.storedLines()).map((line) => `${line.tenant} ${line.seq}`),
        [`outbox-crash ${seq}`],
      );
      const result = await runScript('audit', ['verify', '--tenant', 'outbox-crash', '--checkpoints', stored, '--public-key', publicFile], {
        DATABASE_URL: db.url,
        DATA_DIR: path.join(dir, 'cli'),
      });
      assert.equal(result.code, 0, result.stderr);
      assert.match(result.stdout, /intact: tenant outbox-crash, .* 1 signed checkpoint/);
    } finally {
      await proxy.stop();
      await receiver.close();
    }
  });
});

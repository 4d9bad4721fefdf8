import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { generateSigningKeyPair, loadPublicKey, readCheckpoints } from '../../src/audit/checkpoints.ts';
import { verifyChain } from '../../src/audit/verify.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { buildTestService, sampleEvent, waitFor } from '../helpers/service.ts';

describe('AUDIT_CHAIN=on through the service: two replicas on one database, checkpoints at shutdown', () => {
  let db: TestDatabase;
  let dir: string;

  before(async () => {
    db = await createTestDatabase();
    dir = await mkdtemp(path.join(tmpdir(), 'audit-service-'));
  });
  after(async () => {
    await db.drop();
    await rm(dir, { recursive: true, force: true });
  });

  it('chains what both replicas store (re-sent ids once), and each signs its heads when it shuts down', async () => {
    const { privateKeyPem, publicKeyPem } = generateSigningKeyPair();
    const keyFile = path.join(dir, 'signing.pem');
    await writeFile(keyFile, privateKeyPem, { mode: 0o600 });
    const environment = (name: string) => ({
      AUDIT_CHAIN: 'on',
      AUDIT_SIGNING_KEY_FILE: keyFile,
      AUDIT_CHECKPOINT_FILE: path.join(dir, `${name}.ndjson`),
      AUDIT_CHECKPOINT_INTERVAL_MS: '600000',
      BATCH_MAX_SIZE: '50',
    });
    const replicas = [await buildTestService(db.url, environment('a')), await buildTestService(db.url, environment('b'))];
    try {
      const bodies = Array.from({ length: 8 }, (_, i) => Array.from({ length: 40 }, () => sampleEvent({ id: randomUUID(), tenant: i % 2 === 0 ? 'svc-one' : 'svc-two' })));
      // Every body to both replicas at once: each event is accepted twice, stored once, chained once.
      const answers = await Promise.all(
        bodies.flatMap((body) => replicas.map((replica) => replica.app.inject({ method: 'POST', url: '/events', payload: body.map((e) => JSON.stringify(e)).join('\n'), headers: { 'content-type': 'application/x-ndjson' } }))),
      );
      for (const answer of answers) assert.equal(answer.statusCode, 202, answer.body);
      await waitFor(async () => (await db.count()) === 320, 20_000, 'every event stored');
      // Each event is chained by the replica whose write inserted it: 320 between them, none signed yet.
      const metric = async (name: string) => {
        let sum = 0;
        for (const replica of replicas) {
          const text = (await replica.app.inject({ method: 'GET', url: '/metrics' })).body;
          const line = text.split('\n').find((l) => l.startsWith(`${name} `));
          assert.ok(line, `${name} is exposed`);
          sum += Number(line.slice(name.length + 1));
        }
        return sum;
      };
      await waitFor(async () => (await metric('ingest_audit_chained_events_total')) === 320, 10_000, 'every stored event counted as chained');
      assert.equal(await metric('ingest_audit_unsigned_events'), 320, 'no checkpoint yet: every chained event is unsigned');
    } finally {
      for (const replica of replicas) await replica.close();
    }
    const publicKey = loadPublicKey(publicKeyPem, 'test key');
    for (const tenant of ['svc-one', 'svc-two']) {
      const checkpoints = [];
      for (const name of ['a', 'b']) {
        const { trusted, bad } = readCheckpoints(await readFile(path.join(dir, `${name}.ndjson`), 'utf8'), name, publicKey, tenant);
        assert.deepEqual(bad, []);
        checkpoints.push(...trusted);
      }
      assert.ok(checkpoints.length >= 1, `${tenant} has a signed checkpoint`);
      const report = await verifyChain(db.pool, { tenant, checkpoints });
      assert.equal(report.ok, true, report.finding?.message);
      assert.equal(report.events, 160);
      assert.equal(report.checkpointsChecked, checkpoints.length);
      const top = checkpoints.reduce((a, b) => (a.seq > b.seq ? a : b));
      assert.equal(top.seq, report.lastSeq, 'the shutdown checkpoints pin the whole chain');
    }
  });

  it('a head row deleted under the running service: the next events are stored, not dead-lettered, and the recovery is counted', async () => {
    const service = await buildTestService(db.url, { AUDIT_CHAIN: 'on', BATCH_MAX_SIZE: '50' });
    const post = async (n: number) => {
      const body = Array.from({ length: n }, () => JSON.stringify(sampleEvent({ id: randomUUID(), tenant: 'svc-head' })));
      const answer = await service.app.inject({ method: 'POST', url: '/events', payload: body.join('\n'), headers: { 'content-type': 'application/x-ndjson' } });
      assert.equal(answer.statusCode, 202, answer.body);
    };
    const stored = () => db.count("tenant = 'svc-head'");
    const scrape = async () => (await service.app.inject({ method: 'GET', url: '/metrics' })).body;
    try {
      assert.match(await scrape(), /^ingest_audit_heads_recovered_total\{found="missing"\} 0$/m, 'exposed from the start, at 0');
      await post(20);
      await waitFor(async () => (await stored()) === 20, 10_000, 'the first events stored');
      await db.pool.query(`DELETE FROM audit_chain_heads WHERE tenant = 'svc-head'`);
      await post(30);
      await waitFor(async () => (await stored()) === 50, 10_000, 'the events after the deletion stored');
      assert.match(await scrape(), /^ingest_audit_heads_recovered_total\{found="missing"\} 1$/m);
      assert.match(await scrape(), /^ingest_events_dead_lettered_total 0$/m, 'nothing dead-lettered');
    } finally {
      await service.close();
    }
    const report = await verifyChain(db.pool, { tenant: 'svc-head' });
    assert.equal(report.ok, true, report.finding?.message);
    assert.equal(report.events, 50);
    assert.deepEqual(report.headRecoveries.map((r) => r.found), ['missing']);
  });
});

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { appendFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import type { CheckpointObserver } from '../../src/audit/checkpoint-destination.ts';
import { FileCheckpointDestination } from '../../src/audit/checkpoint-file.ts';
import { CheckpointWriter } from '../../src/audit/checkpoint-writer.ts';
import { generateSigningKeyPair, keyIdOf, loadSigningKey, signCheckpoint, type CheckpointLine } from '../../src/audit/checkpoints.ts';
import { loadConfig } from '../../src/config.ts';
import { createPool } from '../../src/db/pool.ts';
import { PostgresCopySink } from '../../src/sink/postgres-copy-sink.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { queuedEvent } from '../helpers/events.ts';
import { createFakeClock } from '../helpers/fake-clock.ts';
import { runScript } from '../helpers/run-script.ts';

const signal = new AbortController().signal;
const batchOf = (tenant: string, n: number) => Array.from({ length: n }, () => queuedEvent({ tenant }, randomUUID()));

describe('signed checkpoints and `npm run audit`', () => {
  let db: TestDatabase;
  let pool: ReturnType<typeof createPool>;
  let dir: string;
  let privateFile: string;
  let publicFile: string;
  let checkpointFile: string;
  let env: Record<string, string>;
  const clock = createFakeClock();

  before(async () => {
    db = await createTestDatabase();
    pool = createPool(db.url, loadConfig({}).db, pino({ level: 'silent' }));
    dir = await mkdtemp(path.join(tmpdir(), 'audit-checkpoints-'));
    privateFile = path.join(dir, 'keys', 'audit-signing.pem');
    publicFile = path.join(dir, 'keys', 'audit-signing.pub.pem');
    checkpointFile = path.join(dir, 'checkpoints.ndjson');
    env = { DATABASE_URL: db.url, DATA_DIR: path.join(dir, 'data') };
  });
  after(async () => {
    await pool.end();
    await db.drop();
    await rm(dir, { recursive: true, force: true });
  });

  /** Write `batches` batches of 10 for `tenant` through the sink, checkpointing them, then close the writer (the shutdown checkpoint). */
  async function writeCheckpointed(tenant: string, batches: number, file = checkpointFile): Promise<void> {
    const destination = await FileCheckpointDestination.open({ file, logger: pino({ level: 'silent' }) });
    const writer = new CheckpointWriter({ key: await loadSigningKey({ file: privateFile }), clock, everyEvents: 25, intervalMs: 60_000, destinations: [destination] });
    const sink = new PostgresCopySink(pool, { copyTimeoutMs: 10_000, auditChain: { onCommitted: (heads) => writer.record(heads) } });
    for (let i = 0; i < batches; i += 1) await sink.write(batchOf(tenant, 10), { signal });
    await writer.close();
  }

  const verify = (tenant: string, ...extra: string[]) => runScript('audit', ['verify', '--tenant', tenant, '--checkpoints', checkpointFile, '--public-key', publicFile, ...extra], env);

  it('keygen writes an Ed25519 pair (the private key 0600) and never overwrites it', async () => {
    const made = await runScript('audit', ['keygen', '--out', path.join(dir, 'keys')], env);
    assert.equal(made.code, 0, made.stderr);
    assert.match(await readFile(privateFile, 'utf8'), /BEGIN PRIVATE KEY/);
    assert.match(await readFile(publicFile, 'utf8'), /BEGIN PUBLIC KEY/);
    const again = await runScript('audit', ['keygen', '--out', path.join(dir, 'keys')], env);
    assert.notEqual(again.code, 0);
    assert.match(again.stderr, /EEXIST|exists/);
  });

  it('signs a checkpoint every N events, after T, and at close; verify passes against them', async () => {
    const file = path.join(dir, 'timed.ndjson');
    const observed: string[] = [];
    const observer: CheckpointObserver = {
      exported: (destination, result) => observed.push(`${destination} ${result} ${writer.unsignedEvents}`),
      superseded: (destination, lines) => observed.push(`${destination} superseded ${lines}`),
    };
    const destination = await FileCheckpointDestination.open({ file, logger: pino({ level: 'silent' }), observer });
    const writer = new CheckpointWriter({ key: await loadSigningKey({ file: privateFile }), clock, everyEvents: 25, intervalMs: 1_000, destinations: [destination] });
    const sink = new PostgresCopySink(pool, { copyTimeoutMs: 10_000, auditChain: { onCommitted: (heads) => writer.record(heads) } });
    const lines = async () => (await readFile(file, 'utf8')).split('\n').filter(Boolean).map((line) => JSON.parse(line) as CheckpointLine);
    await sink.write(batchOf('timed', 10), { signal });
    await writer.idle();
    assert.deepEqual(await lines(), [], 'nothing due yet');
    assert.equal(writer.unsignedEvents, 10);
    await clock.tickAsync(1_000);
    await writer.idle();
    assert.deepEqual((await lines()).map((line) => line.seq), ['1'], 'the timer signed the head');
    assert.deepEqual(observed, ['file written 0'], 'one append, nothing left unsigned');
    assert.equal(writer.unsignedEvents, 0);
    await sink.write(batchOf('timed', 10), { signal });
    await sink.write(batchOf('timed', 30), { signal }); // 40 ≥ 25 events: signed at once, the newest head only
    await writer.idle();
    assert.deepEqual((await lines()).map((line) => line.seq), ['1', '3']);
    await sink.write(batchOf('timed', 1), { signal });
    await writer.close();
    const signed = await lines();
    assert.deepEqual(signed.map((line) => line.seq), ['1', '3', '4'], 'the close signed the last head');
    assert.equal(signed[0]!.key, keyIdOf(await loadSigningKey({ file: privateFile })));
    const result = await runScript('audit', ['verify', '--tenant', 'timed', '--checkpoints', file, '--public-key', publicFile], env);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /intact: tenant timed, 4 links, 51 events.*3 signed checkpoints match/);
  });

  it('a destination that cannot store keeps the newest line per tenant; the other still gets every line', async (t) => {
    if (!existsSync('/dev/full')) return t.skip('no /dev/full (every write to it fails with ENOSPC) on this system');
    const good = path.join(dir, 'beside-full.ndjson');
    const observed: string[] = [];
    const observer: CheckpointObserver = {
      exported: (destination, result) => observed.push(`${destination} ${result}`),
      superseded: (destination, lines) => observed.push(`${destination} superseded ${lines}`),
    };
    const logger = pino({ level: 'silent' });
    const destinations = [await FileCheckpointDestination.open({ file: good, logger, observer }), await FileCheckpointDestination.open({ file: '/dev/full', logger, observer })];
    const writer = new CheckpointWriter({ key: await loadSigningKey({ file: privateFile }), clock, everyEvents: 10, intervalMs: 60_000, destinations });
    const sink = new PostgresCopySink(pool, { copyTimeoutMs: 10_000, auditChain: { onCommitted: (heads) => writer.record(heads) } });
    await sink.write(batchOf('full', 10), { signal });
    await writer.idle();
    assert.deepEqual(observed.toSorted(), ['file failed', 'file written'], 'the two appends run side by side');
    assert.equal(writer.unsignedEvents, 10, 'the most any destination holds: the full one has the 10 events unstored');
    await sink.write(batchOf('full', 10), { signal });
    await writer.idle();
    assert.deepEqual(observed.slice(2).toSorted(), ['file failed', 'file superseded 1', 'file written'], 'the failing one keeps only the newer head');
    assert.equal(writer.unsignedEvents, 20);
    await writer.close();
    const lines = (await readFile(good, 'utf8')).split('\n').filter(Boolean).map((line) => JSON.parse(line) as CheckpointLine);
    assert.deepEqual(lines.map((line) => line.seq), ['1', '2'], 'the working file got every line');
  });

  it('detects the tail deleted with its link and the head rewound, through the signed checkpoint', async () => {
    await writeCheckpointed('cut', 4);
    assert.equal((await verify('cut')).code, 0);
    await db.pool.query(`DELETE FROM events e USING audit_chain_links l WHERE l.tenant = 'cut' AND l.seq >= 3 AND e.tenant = 'cut' AND e.id = ANY(l.ids)`);
    await db.pool.query(`DELETE FROM audit_chain_links WHERE tenant = 'cut' AND seq >= 3`);
    await db.pool.query(`UPDATE audit_chain_heads h SET seq = 2, hash = l.hash FROM audit_chain_links l WHERE h.tenant = 'cut' AND l.tenant = 'cut' AND l.seq = 2`);
    const unsigned = await runScript('audit', ['verify', '--tenant', 'cut'], env);
    assert.equal(unsigned.code, 0, 'consistent without the checkpoint');
    const result = await verify('cut');
    assert.equal(result.code, 1);
    assert.match(result.stderr, /NOT INTACT at link 3: tail-truncated/);
  });

  it('a head the service re-derived (its row deleted) is a note beside an intact verdict; with the last link cut too, the checkpoint fails it', async () => {
    await writeCheckpointed('recovered', 3);
    await db.pool.query(`DELETE FROM audit_chain_heads WHERE tenant = 'recovered'`);
    // A restarted service (a sink that knows no head) writes the tenant's next batch.
    await new PostgresCopySink(pool, { copyTimeoutMs: 10_000, auditChain: {} }).write(batchOf('recovered', 10), { signal });
    const intact = await verify('recovered');
    assert.equal(intact.code, 0, intact.stderr);
    assert.match(intact.stdout, /intact: tenant recovered, 4 links, 40 events/);
    assert.match(intact.stdout, /note: at \S+ the service found the head of tenant recovered deleted and re-derived it from link 3/);
    const json = JSON.parse((await verify('recovered', '--json')).stdout) as { ok: boolean; headRecoveries: { found: string; foundSeq: string | null; lastSeq: string }[] };
    assert.equal(json.ok, true);
    assert.deepEqual(json.headRecoveries.map(({ found, foundSeq, lastSeq }) => ({ found, foundSeq, lastSeq })), [{ found: 'missing', foundSeq: null, lastSeq: '3' }]);

    await writeCheckpointed('recut', 3);
    await db.pool.query(`DELETE FROM events e USING audit_chain_links l WHERE l.tenant = 'recut' AND l.seq = 3 AND e.tenant = 'recut' AND e.id = ANY(l.ids)`);
    await db.pool.query(`DELETE FROM audit_chain_links WHERE tenant = 'recut' AND seq = 3`);
    await db.pool.query(`DELETE FROM audit_chain_heads WHERE tenant = 'recut'`);
    await new PostgresCopySink(pool, { copyTimeoutMs: 10_000, auditChain: {} }).write(batchOf('recut', 10), { signal });
    const cut = await verify('recut');
    assert.equal(cut.code, 1);
    assert.match(cut.stderr, /NOT INTACT at link 3: checkpoint-mismatch/);
    assert.match(cut.stderr, /note: .* head of tenant recut deleted and re-derived it from link 2/);
  });

  it('names the first bad position: an UPDATE of a row, exit 1', async () => {
    await writeCheckpointed('cli-updated', 3);
    const { rows } = await db.pool.query<{ id: string }>(`SELECT ids[2]::text AS id FROM audit_chain_links WHERE tenant = 'cli-updated' AND seq = 2`);
    await db.pool.query(`UPDATE events SET outcome = 'failure' WHERE tenant = 'cli-updated' AND id = $1`, [rows[0]!.id]);
    const result = await verify('cli-updated', '--json');
    assert.equal(result.code, 1);
    const report = JSON.parse(result.stdout) as { ok: boolean; finding: { kind: string; seq: string; key: { id: string } } };
    assert.equal(report.ok, false);
    assert.deepEqual([report.finding.kind, report.finding.seq, report.finding.key.id], ['row-altered', '2', rows[0]!.id]);
  });

  it('refuses a forged checkpoint: an altered line, and a line signed with another key', async () => {
    await writeCheckpointed('forged', 2);
    const original = await readFile(checkpointFile, 'utf8');
    const line = original.split('\n').map((text) => (text ? (JSON.parse(text) as CheckpointLine) : undefined)).find((c) => c?.tenant === 'forged')!;
    // Altered: the seq moved back (what an operator who cut the tail would want it to say).
    await appendFile(checkpointFile, `${JSON.stringify({ ...line, seq: '1' })}\n`);
    const altered = await verify('forged');
    assert.equal(altered.code, 1);
    assert.match(altered.stderr, /bad signature: the checkpoint was forged or altered/);
    // Signed, but by a key of the forger's own.
    await writeFile(checkpointFile, original);
    const { privateKeyPem } = generateSigningKeyPair();
    const foreign = await loadSigningKey({ pem: privateKeyPem });
    await appendFile(checkpointFile, `${JSON.stringify(signCheckpoint(foreign, keyIdOf(foreign), { tenant: 'forged', seq: 1n, hash: Buffer.alloc(32) }, new Date().toISOString()))}\n`);
    const other = await verify('forged');
    assert.equal(other.code, 1);
    assert.match(other.stderr, /signed by key [0-9a-f]{16}, not by the given public key/);
    await writeFile(checkpointFile, original);
    assert.equal((await verify('forged')).code, 0);
  });

  it('exits 2 on usage errors', async () => {
    for (const args of [
      ['verify'],
      ['verify', '--tenant', 'a b'],
      ['verify', '--tenant', 't', '--since', 'yesterday'],
      ['verify', '--tenant', 't', '--checkpoints', checkpointFile],
      ['verify', '--tenant', 't', '--checkpoints', path.join(dir, 'absent.ndjson'), '--public-key', publicFile],
      ['verify', '--tenant', 't', '--bogus'],
      ['frobnicate'],
      ['keygen'],
    ]) {
      const result = await runScript('audit', args, env);
      assert.equal(result.code, 2, `${args.join(' ')}: ${result.stderr}`);
    }
  });
});

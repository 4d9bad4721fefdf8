/**
 * Two regions (DESIGN.md "Two regions"): two embedded PostgreSQL 17 clusters on loopback, each with
 * its own service, kept in step by `npm run replication -- setup` (logical replication both ways).
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import pg from 'pg';
import { pino } from 'pino';
import { ConfigError } from '../../src/config.ts';
import { startEmbeddedPostgres, type EmbeddedDatabase } from '../../src/db/embedded-postgres.ts';
import { migrate } from '../../src/db/migrate.ts';
import { subscriptionName, databaseIdentity } from '../../src/db/replication.ts';
import { findFreePort } from '../../src/free-port.ts';
import { runScript } from '../helpers/run-script.ts';
import { buildTestService, sampleEvent, waitFor, type TestService } from '../helpers/service.ts';

const logger = pino({ level: 'warn' });
// Logical decoding, and a worker that lost its peer retries every 200 ms instead of 5 s.
const SETTINGS = { wal_level: 'logical', wal_retrieve_retry_interval: '200ms' };
const REPLICATED_WITHIN_MS = 20_000;
// Committed acks: a 201 means the event is in the region's database. Rollups on, as a region that reads event_counts runs.
const SERVICE_ENV = { ACK_MODE: 'committed', ROLLUPS: 'on' };

interface Region {
  readonly dataDir: string;
  readonly port: number;
  database: EmbeddedDatabase;
  pool: pg.Pool;
  service: TestService | undefined;
}

async function startRegion(dataDir: string, port: number): Promise<Pick<Region, 'database' | 'pool'>> {
  const database = await startEmbeddedPostgres({ dataDir, logger, ephemeral: true, settings: SETTINGS, port });
  const pool = new pg.Pool({ connectionString: database.url, max: 2 });
  pool.on('error', () => {});
  return { database, pool };
}

const countOf = async (region: Region, tenant: string, id: string) =>
  Number((await region.pool.query<{ n: string }>('SELECT count(*) AS n FROM events WHERE tenant = $1 AND id = $2', [tenant, id])).rows[0]!.n);

async function post(region: Region, event: Record<string, unknown>): Promise<string> {
  const response = await region.service!.app.inject({ method: 'POST', url: '/event', payload: event });
  assert.equal(response.statusCode, 201, response.body);
  return (JSON.parse(response.body) as { id: string }).id;
}

const applyErrors = async (region: Region) =>
  Number((await region.pool.query<{ n: string }>(`SELECT coalesce(sum(apply_error_count), 0) AS n FROM pg_stat_subscription_stats`)).rows[0]!.n);

const replicated = (region: Region, tenant: string, id: string, what: string) =>
  waitFor(async () => (await countOf(region, tenant, id)) === 1, REPLICATED_WITHIN_MS, what);

describe('two regions kept in step by logical replication', () => {
  let scratch: string;
  let a: Region | undefined;
  let b: Region | undefined;
  let skipReason: string | undefined;

  before(async () => {
    scratch = await mkdtemp(path.join(tmpdir(), 'ingest-two-regions-'));
    await chmod(scratch, 0o711); // as root the servers run as the postgres user, which must pass through
    try {
      const regions: Region[] = [];
      for (const name of ['a', 'b']) {
        const dataDir = path.join(scratch, name, 'postgres');
        const port = await findFreePort();
        const started = await startRegion(dataDir, port);
        await migrate(started.database.url, logger);
        regions.push({ dataDir, port, ...started, service: undefined });
      }
      [a, b] = regions as [Region, Region];
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error;
      skipReason = `embedded PostgreSQL is not available (${error.message})`;
      return;
    }
    // A row stored before replication exists reaches the other region by the initial copy.
    await a.pool.query(`INSERT INTO events (id, tenant, occurred_at, received_at, action, actor_id) VALUES ($1, 'before', now(), now(), 'x', 'u')`, [randomUUID()]);
    const setup = await runScript('replication', ['setup', '--local', a.database.url, '--remote', b.database.url], {});
    if (setup.code === 3) {
      skipReason = `logical replication cannot be set up here: ${setup.stderr.trim()}`;
      return;
    }
    assert.equal(setup.code, 0, setup.stderr);
    assert.match(setup.stdout, /local\tpublication events_regions\tcreated/);
    assert.match(setup.stdout, /remote\tsubscription events_from_\S+\tcreated/);
    for (const region of [a, b]) region.service = await buildTestService(region.database.url, SERVICE_ENV);
  });

  after(async () => {
    for (const region of [a, b]) {
      await region?.service?.close();
      await region?.pool.end();
      await region?.database.stop();
    }
    await rm(scratch, { recursive: true, force: true });
  });

  const skipped = (t: TestContext) => {
    // .ci/run sets INGEST_REQUIRE_REPLICATION=1: there the embedded server comes with npm ci, so
    // a setup that cannot run is a failure, not a quiet skip.
    if (skipReason !== undefined && process.env.INGEST_REQUIRE_REPLICATION === '1') {
      throw new Error(`INGEST_REQUIRE_REPLICATION=1 but the two-regions test cannot run: ${skipReason}`);
    }
    if (skipReason !== undefined) t.skip(skipReason);
    return skipReason !== undefined;
  };

  it('is idempotent: a second setup changes nothing and reports what exists', async (t) => {
    if (skipped(t)) return;
    const again = await runScript('replication', ['setup', '--local', a!.database.url, '--remote', b!.database.url], {});
    assert.equal(again.code, 0, again.stderr);
    assert.doesNotMatch(again.stdout, /created/);
    assert.match(again.stdout, /local\tpublication events_regions\texists/);
    const counting = async () => (await a!.pool.query<{ tgenabled: string }>(`SELECT tgenabled FROM pg_trigger WHERE tgrelid = 'events'::regclass AND tgname = 'events_count_replicated'`)).rows[0]!.tgenabled;
    assert.equal((await runScript('replication', ['setup', '--local', a!.database.url, '--remote', b!.database.url, '--rollups', 'off'], {})).code, 0);
    assert.equal(await counting(), 'D', '--rollups off: applied events are not counted');
    assert.equal((await runScript('replication', ['setup', '--local', a!.database.url, '--remote', b!.database.url], {})).code, 0);
    assert.equal(await counting(), 'R');
    const { rows } = await b!.pool.query<{ n: string }>(`SELECT count(*) AS n FROM pg_subscription`);
    assert.equal(rows[0]!.n, '1', 'one subscription in B, not two');
    // A partition made later the way partition maintenance makes one takes the apply-only triggers.
    await a!.pool.query(`CREATE TABLE events_p20300101 (LIKE events INCLUDING DEFAULTS INCLUDING CONSTRAINTS)`);
    await a!.pool.query(`ALTER TABLE events ATTACH PARTITION events_p20300101 FOR VALUES FROM ('2030-01-01Z') TO ('2030-01-02Z')`);
    const triggers = await a!.pool.query<{ tgname: string; tgenabled: string }>(
      `SELECT tgname, tgenabled FROM pg_trigger WHERE tgrelid = 'events_p20300101'::regclass ORDER BY 1`,
    );
    assert.deepEqual(triggers.rows, [
      { tgname: 'events_count_replicated', tgenabled: 'R' },
      { tgname: 'events_skip_replicated_duplicate', tgenabled: 'R' },
    ]);
  });

  it("copies what A held before setup, and a write in either region appears in the other", async (t) => {
    if (skipped(t)) return;
    await waitFor(async () => Number((await b!.pool.query<{ n: string }>(`SELECT count(*) AS n FROM events WHERE tenant = 'before'`)).rows[0]!.n) === 1, REPLICATED_WITHIN_MS, 'the initial copy in B');
    const inA = await post(a!, sampleEvent({ tenant: 'ab', id: randomUUID() }));
    const inB = await post(b!, sampleEvent({ tenant: 'ab', id: randomUUID() }));
    await replicated(b!, 'ab', inA, 'A’s event in B');
    await replicated(a!, 'ab', inB, 'B’s event in A');
  });

  it('keeps replicating when the same event is accepted in both regions, and each stores it once', async (t) => {
    if (skipped(t)) return;
    // Pause both directions so both regions store the event before either sees the other's copy:
    // the insert-insert conflict that stops an apply worker without the skip trigger.
    const [nameInA, nameInB] = [subscriptionName(await databaseIdentity(b!.pool)), subscriptionName(await databaseIdentity(a!.pool))];
    await a!.pool.query(`ALTER SUBSCRIPTION ${nameInA} DISABLE`);
    await b!.pool.query(`ALTER SUBSCRIPTION ${nameInB} DISABLE`);
    const event = sampleEvent({ tenant: 'retried', id: randomUUID() });
    const id = await post(a!, event);
    assert.equal(await post(b!, event), id, 'the client retried the same event in B');
    await a!.pool.query(`ALTER SUBSCRIPTION ${nameInA} ENABLE`);
    await b!.pool.query(`ALTER SUBSCRIPTION ${nameInB} ENABLE`);

    const afterA = await post(a!, sampleEvent({ tenant: 'retried', id: randomUUID() }));
    const afterB = await post(b!, sampleEvent({ tenant: 'retried', id: randomUUID() }));
    await replicated(b!, 'retried', afterA, 'a later event of A in B');
    await replicated(a!, 'retried', afterB, 'a later event of B in A');
    assert.equal(await countOf(a!, 'retried', id), 1, 'A reads the retried event once');
    assert.equal(await countOf(b!, 'retried', id), 1, 'B reads the retried event once');
    const status = await runScript('replication', ['status', '--local', a!.database.url, '--remote', b!.database.url], {});
    assert.equal(status.code, 0, status.stdout + status.stderr);
    assert.match(status.stdout, /local\tsubscription \S+\tstreaming/);
    assert.match(status.stdout, /remote\tslot \S+\tactive\tlag \d+ bytes/);
    // The per-minute counts hold the applied events too: A's event_counts equal its events.
    const { rows } = await a!.pool.query<{ stored: string; counted: string }>(
      `SELECT (SELECT count(*) FROM events WHERE tenant = 'retried') AS stored, (SELECT coalesce(sum(count), 0) FROM event_counts WHERE tenant = 'retried') AS counted`,
    );
    assert.equal(rows[0]!.counted, rows[0]!.stored);
  });

  it('heals the race of the same key applied while the region’s own write of it is uncommitted', async (t) => {
    if (skipped(t)) return;
    const id = randomUUID();
    const insert = `INSERT INTO events (id, tenant, occurred_at, received_at, action, actor_id) VALUES ($1, 'race', '2026-11-22T05:00:00Z', now(), 'x', 'u') ON CONFLICT DO NOTHING`;
    const errorsBefore = await applyErrors(b!);
    const local = await b!.pool.connect();
    try {
      await local.query('BEGIN');
      await local.query(insert, [id]); // B's own write of the key, not committed yet
      await a!.pool.query(insert, [id]); // A's, committed: its apply in B waits on B's transaction
      await waitFor(
        async () => (await b!.pool.query(`SELECT 1 FROM pg_stat_activity WHERE backend_type = 'logical replication apply worker' AND wait_event_type = 'Lock'`)).rowCount === 1,
        REPLICATED_WITHIN_MS,
        'B’s apply worker waiting on the key',
      );
      await local.query('COMMIT');
    } finally {
      local.release();
    }
    await waitFor(async () => (await applyErrors(b!)) > errorsBefore, REPLICATED_WITHIN_MS, 'the apply error in B');
    const later = await post(a!, sampleEvent({ tenant: 'race', id: randomUUID() }));
    await replicated(b!, 'race', later, 'a later event of A in B, after the worker’s restart');
    assert.equal(await countOf(b!, 'race', id), 1);
  });

  it("takes writes in B while A's database is down, and A catches up when it is back", async (t) => {
    if (skipped(t)) return;
    await a!.service!.close();
    a!.service = undefined;
    await a!.pool.end();
    await a!.database.stop();

    const whileDown = await post(b!, sampleEvent({ tenant: 'failover', id: randomUUID() }));
    const down = await runScript('replication', ['status', '--local', b!.database.url], {});
    assert.match(down.stdout, /local\tslot \S+\t/, down.stdout);

    Object.assign(a!, await startRegion(a!.dataDir, a!.port));
    await replicated(a!, 'failover', whileDown, 'B’s event written during the outage, in A');
    a!.service = await buildTestService(a!.database.url, SERVICE_ENV);
    const afterReturn = await post(a!, sampleEvent({ tenant: 'failover', id: randomUUID() }));
    await replicated(b!, 'failover', afterReturn, 'A’s first event after its return, in B');
  });
});

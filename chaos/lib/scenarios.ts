/**
 * The chaos scenarios of issue 13, each a function of a ScenarioRun (set up, under load) that
 * injects its faults and notes what it saw. Durations shrink with `short` (the `npm test` run).
 */
import { execFile } from 'node:child_process';
import { mkdir, rm, statfs, unlink, writeFile } from 'node:fs/promises';
import { tmpdir, userInfo } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import pg from 'pg';
import { POISON_ACTION } from './ledger-load.ts';
import { SHUTDOWN_TIMEOUT_MS, type ScenarioRun } from './scenario-run.ts';

const run = promisify(execFile);

export interface Scenario {
  readonly id: string;
  readonly title: string;
  /** Why it cannot run here (then it is listed as skipped), or undefined. */
  readonly unavailable?: (run: ScenarioRun) => string | undefined;
  readonly setUp?: Parameters<ScenarioRun['setUp']>[0] | ((run: ScenarioRun) => Promise<Parameters<ScenarioRun['setUp']>[0]>);
  readonly inject: (run: ScenarioRun) => Promise<void>;
  /** Undo what setUp made outside the run (a mount). */
  readonly tearDown?: (run: ScenarioRun) => Promise<void>;
}

/** The disk-full scenario's tmpfs while it is mounted. */
let mounted: string | undefined;

const random = (low: number, high: number) => low + Math.random() * (high - low);
const needsOwnServer = (r: ScenarioRun) => (r.server.control ? undefined : 'needs a PostgreSQL server of its own (DATABASE_URL was given): skipped');

export const SCENARIOS: readonly Scenario[] = [
  {
    id: 'partition',
    title: 'network partition: every byte frozen, then healed',
    async inject(r) {
      const freezeMs = r.options.short ? 4000 : 30_000;
      await sleep(r.options.short ? 1000 : 3000);
      r.proxy.freeze();
      await sleep(freezeMs);
      const healed = Date.now();
      r.proxy.thaw();
      r.notes.push(`frozen ${freezeMs / 1000} s`);
      await r.measureRecovery(healed, 'partition');
    },
  },
  {
    id: 'reset',
    title: 'every connection reset mid-COPY',
    async inject(r) {
      const rounds = r.options.short ? 2 : 5;
      for (let i = 0; i < rounds; i += 1) {
        await sleep(random(700, 1500));
        await r.proxy.cut();
        await r.proxy.restore();
        await r.measureRecovery(Date.now(), `reset ${i + 1}`);
      }
      r.notes.push(`${rounds} resets`);
    },
  },
  {
    id: 'db-sigkill',
    title: 'database SIGKILLed, restarted after 5 s',
    unavailable: needsOwnServer,
    async inject(r) {
      await sleep(2000);
      await r.server.control!.kill();
      await sleep(r.options.short ? 1000 : 5000);
      await r.server.control!.start();
      await r.measureRecovery(Date.now(), 'database restart after SIGKILL');
    },
  },
  {
    id: 'db-restart',
    title: 'database restarted cleanly (pg_ctl restart -m fast)',
    unavailable: needsOwnServer,
    async inject(r) {
      for (let i = 0; i < (r.options.short ? 1 : 2); i += 1) {
        await sleep(2000);
        await r.server.control!.restartFast();
        await r.measureRecovery(Date.now(), `pg_ctl restart ${i + 1}`);
      }
    },
  },
  ...[50, 500].map(
    (latencyMs): Scenario => ({
      id: `slow-${latencyMs}`,
      title: `database slow: +${latencyMs} ms per round trip`,
      async inject(r) {
        await sleep(1000);
        r.proxy.setLatencyMs(latencyMs);
        await sleep(r.options.short ? 3000 : 20_000);
        r.proxy.setLatencyMs(0);
        await r.measureRecovery(Date.now(), `latency ${latencyMs} ms removed`);
      },
    }),
  ),
  {
    id: 'sigterm',
    title: 'service SIGTERMed under load, restarted (rounds)',
    async inject(r) {
      const rounds = r.options.short ? 2 : 10;
      const drains: number[] = [];
      const codes = new Map<string, number>();
      for (let i = 0; i < rounds; i += 1) {
        await sleep(random(1000, 3000));
        const signalledAt = Date.now();
        const exit = await r.killService('SIGTERM');
        const drainMs = exit!.atMs - signalledAt;
        drains.push(drainMs);
        const code = String(exit!.code ?? exit!.signal);
        codes.set(code, (codes.get(code) ?? 0) + 1);
        if (drainMs > SHUTDOWN_TIMEOUT_MS + 5000) r.problems.push(`round ${i + 1}: the drain took ${drainMs} ms (deadline ${SHUTDOWN_TIMEOUT_MS} ms)`);
        if (exit!.code !== 0 && exit!.code !== 3) r.problems.push(`round ${i + 1}: exit ${code} after SIGTERM`);
        const restarted = Date.now();
        await r.startService();
        await r.measureRecovery(restarted, `restart ${i + 1}`);
      }
      r.notes.push(`${rounds} rounds; drain ${Math.min(...drains)}–${Math.max(...drains)} ms; exits ${[...codes].map(([c, n]) => `${n}×${c}`).join(', ')}`);
    },
  },
  {
    id: 'sigkill',
    title: 'service SIGKILLed in WAL mode (rounds, some during start-up replay)',
    async inject(r) {
      const rounds = r.options.short ? 3 : 12;
      let duringReplay = 0;
      for (let i = 0; i < rounds; i += 1) {
        const replayRound = i % 3 === 2;
        if (replayRound) {
          // A backlog in the log: the database unreachable while 202s go on, then the kill, then
          // a start that replays it — killed as soon as it says it replays.
          r.proxy.freeze();
          await sleep(1500);
          await r.killService('SIGKILL');
          r.proxy.thaw();
          const starting = r.spawnService();
          const replaying = await starting.waitForStartupLog(/replaying the write-ahead log/);
          await r.killService('SIGKILL');
          if (replaying) duringReplay += 1;
          else r.notes.push(`round ${i + 1}: the start ended before its replay was seen`);
        } else {
          await sleep(random(500, 2000));
          await r.killService('SIGKILL');
        }
        const restarted = Date.now();
        await r.startService();
        await r.measureRecovery(restarted, `restart ${i + 1}`);
      }
      r.notes.push(`${rounds} SIGKILLs, ${duringReplay} of them during a start-up replay`);
    },
  },
  {
    id: 'disk-full',
    title: 'disk full under the WAL and the dead-letter queue (tmpfs)',
    unavailable: () => (userInfo().uid === 0 ? undefined : 'needs root to mount a small tmpfs: skipped (run `npm run chaos` as root for it)'),
    async setUp() {
      const mountPoint = path.join(tmpdir(), `ingest-chaos-tmpfs-${process.pid}-${Date.now()}`);
      await mkdir(mountPoint, { recursive: true });
      await run('mount', ['-t', 'tmpfs', '-o', 'size=32m,mode=0755', 'ingest-chaos', mountPoint]);
      mounted = mountPoint;
      return {
        dataDir: mountPoint,
        environment: { WAL_SEGMENT_BYTES: String(1024 * 1024), WAL_MAX_BYTES: String(256 * 1024 * 1024) },
        beforeStart: async (run: ScenarioRun) => {
          // The database refuses the poison events for good: they must go to the dead-letter queue.
          const client = new pg.Client({ connectionString: run.databaseUrl });
          await client.connect();
          await client.query(`ALTER TABLE events ADD CONSTRAINT chaos_poison CHECK (action <> '${POISON_ACTION}')`);
          await client.end();
        },
      };
    },
    async inject(r) {
      await sleep(2000);
      // Events the database refuses (one in ten, from now until the heal: each costs a split and
      // an fsynced dead-letter write, so more for longer would test poison throughput instead),
      // held back with their batches while the disk fills, so the dead-letter writes meet the
      // full disk too.
      const locker = new pg.Client({ connectionString: r.databaseUrl });
      await locker.connect();
      await locker.query('BEGIN');
      await locker.query('LOCK TABLE events IN ACCESS EXCLUSIVE MODE');
      r.load.poisonEvery = 10;
      await sleep(500);
      const filler = path.join(r.dataDir, 'filler');
      const { bavail, bsize } = await statfs(r.dataDir);
      await writeFile(filler, Buffer.alloc(bavail * bsize)).catch(() => {}); // to the last block
      await sleep(500);
      await locker.query('ROLLBACK');
      await locker.end();
      await sleep(r.options.short ? 2000 : 5000);
      const scrape = await (await fetch(`${r.service!.origin}/metrics`)).text();
      const dlqErrors = Number(/^ingest_dlq_write_errors_total (\d+)/m.exec(scrape)?.[1] ?? 0);
      const ready = await fetch(`${r.service!.origin}/readyz`);
      r.notes.push(`while full: ${dlqErrors} dead-letter write errors, /readyz ${ready.status} ${JSON.stringify(await ready.json())}`);
      const healed = Date.now();
      r.load.poisonEvery = 0;
      await unlink(filler);
      const walFull = r.load.statuses.get(503) ?? 0;
      r.notes.push(`${walFull} requests refused 503 while the disk was full`);
      if (walFull === 0) r.problems.push('the full disk refused nothing: the scenario did not bite');
      await r.measureRecovery(healed, 'disk freed');
      await sleep(1000);
      const firstAck = r.load.firstAckAfter(healed);
      if (firstAck === undefined) r.problems.push('no 202 after the disk was freed');
      else r.notes.push(`first 202 ${firstAck - healed} ms after the disk was freed`);
    },
    async tearDown() {
      const mountPoint = mounted;
      mounted = undefined;
      if (!mountPoint) return;
      await run('umount', [mountPoint]).catch(() => run('umount', ['-l', mountPoint]));
      await rm(mountPoint, { recursive: true, force: true });
    },
  },
];

/**
 * One scenario's world: a database of its own on the run's server, a TCP proxy between it and the
 * service (the network the faults break), a DATA_DIR of its own, the service as a child process,
 * the ledger load and the monitor. `finish()` stops the load, lets the service drain, stops it,
 * and settles the ledger against the table (and the dead-letter files).
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { findFreePort } from '../../src/free-port.ts';
import { TcpProxy, throughProxy } from '../../test/helpers/tcp-proxy.ts';
import { LedgerLoad } from './ledger-load.ts';
import { ServiceMonitor } from './monitor.ts';
import type { DatabaseServer } from './postgres-server.ts';
import { ServiceProcess } from './service-process.ts';

/** Heal → first commit must be within this (issue 13). */
export const RECOVERY_TARGET_MS = 5000;
export const SHUTDOWN_TIMEOUT_MS = 10_000;

export interface RunOptions {
  readonly eventsPerSecond: number;
  readonly bulk: number;
  readonly connections: number;
  /** Scale for fault durations: 1 for the full run, less for the short one. */
  readonly short: boolean;
  readonly log: (line: string) => void;
}

export interface ScenarioResult {
  readonly scenario: string;
  readonly acknowledged: number;
  readonly stored: number;
  readonly deadLettered: number;
  readonly lost: number;
  readonly duplicated: number;
  /** Stored ids the run never sent. */
  readonly unknown: number;
  readonly unexpected5xx: number;
  readonly refusals: string;
  readonly maxRssMiB: number;
  /** Per fault: heal (or restart) → first commit. */
  readonly recoveryMs: readonly number[];
  /** Per fault: heal → queue back under a batch. */
  readonly drainedMs: readonly number[];
  readonly slowHealth: number;
  readonly maxHealthMs: number;
  readonly notes: readonly string[];
  readonly problems: readonly string[];
  readonly skipped?: string;
}

export class ScenarioRun {
  readonly name: string;
  readonly options: RunOptions;
  readonly server: DatabaseServer;
  readonly monitor = new ServiceMonitor();
  readonly notes: string[] = [];
  readonly problems: string[] = [];
  readonly recoveryMs: number[] = [];
  readonly drainedMs: number[] = [];
  proxy!: TcpProxy;
  load!: LedgerLoad;
  service: ServiceProcess | undefined;
  databaseUrl!: string;
  dataDir!: string;
  #databaseName!: string;
  #port = 0;
  #environment: Record<string, string> = {};
  #ownDataDir = true;

  constructor(name: string, server: DatabaseServer, options: RunOptions) {
    this.name = name;
    this.server = server;
    this.options = options;
  }

  async setUp(options: { environment?: Record<string, string>; dataDir?: string; beforeStart?: (run: ScenarioRun) => Promise<void> } = {}): Promise<void> {
    this.#databaseName = `chaos_${randomBytes(5).toString('hex')}`;
    this.databaseUrl = await this.server.createDatabase(this.#databaseName);
    const target = new URL(this.server.url);
    this.proxy = new TcpProxy({ host: target.hostname, port: Number(target.port) });
    await this.proxy.start();
    this.#ownDataDir = options.dataDir === undefined;
    this.dataDir = options.dataDir ?? (await mkdtemp(path.join(tmpdir(), 'ingest-chaos-')));
    this.#port = await findFreePort();
    this.#environment = {
      DATABASE_URL: throughProxy(this.databaseUrl, this.proxy),
      DATA_DIR: this.dataDir,
      SHUTDOWN_TIMEOUT_MS: String(SHUTDOWN_TIMEOUT_MS),
      ...options.environment,
    };
    await options.beforeStart?.(this);
    this.monitor.start();
    await this.startService();
    this.load = new LedgerLoad({
      origin: `http://127.0.0.1:${this.#port}`,
      eventsPerSecond: this.options.eventsPerSecond,
      bulk: this.options.bulk,
      connections: this.options.connections,
      tenant: 'chaos',
    });
    this.load.start();
  }

  /** Start the service and wait until it listens (the monitor watches it from the spawn on). */
  async startService(): Promise<ServiceProcess> {
    const service = this.spawnService();
    await service.listening;
    this.monitor.expectUp(true);
    return service;
  }

  /** Spawn without waiting (to kill it during start-up). */
  spawnService(): ServiceProcess {
    const service = new ServiceProcess(this.#environment, this.#port);
    this.service = service;
    this.monitor.watch(service, false);
    return service;
  }

  /** Kill the service (the monitor stops expecting /healthz first). */
  async killService(signal: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null; atMs: number } | undefined> {
    const service = this.service;
    if (!service) return undefined;
    this.monitor.expectUp(false);
    service.kill(signal);
    return service.exited;
  }

  /** After a heal at `healedAtMs`: note the time to the first commit and to a drained queue. */
  async measureRecovery(healedAtMs: number, what: string): Promise<void> {
    const committed = await this.monitor.firstCommitAfter(healedAtMs, 60_000);
    if (committed === undefined) {
      this.problems.push(`${what}: no commit within 60 s of the heal`);
      return;
    }
    this.recoveryMs.push(committed - healedAtMs);
    if (committed - healedAtMs > RECOVERY_TARGET_MS) this.problems.push(`${what}: first commit ${((committed - healedAtMs) / 1000).toFixed(1)} s after the heal (target ≤ 5 s)`);
    const drained = await this.monitor.queueAtMost(500, healedAtMs, 90_000);
    if (drained !== undefined) this.drainedMs.push(drained - healedAtMs);
    else this.problems.push(`${what}: the backlog did not drain within 90 s of the heal`);
  }

  /** Stop the load, let the queue drain, SIGTERM the service, and settle the ledger. */
  async finish(): Promise<ScenarioResult> {
    await this.load.stop();
    const service = this.service?.running ? this.service : await this.startService();
    const drainedAt = await this.monitor.queueAtMost(0, Date.now(), 90_000);
    if (drainedAt === undefined) this.problems.push('the queue did not drain within 90 s after the load stopped');
    this.monitor.expectUp(false);
    const exit = await service.stop(SHUTDOWN_TIMEOUT_MS + 10_000);
    if (exit.code !== 0) this.problems.push(`the final SIGTERM ended with ${exit.code ?? exit.signal} (expected 0)`);
    await this.monitor.stop();
    const result = await this.#settle();
    await this.load.close();
    await this.proxy.stop();
    return result;
  }

  /** Always, even after a failure: nothing of the scenario is left running. */
  async cleanUp(): Promise<void> {
    if (this.service?.running) {
      this.service.kill('SIGKILL');
      await this.service.exited;
    }
    await this.load?.close().catch(() => {});
    await this.monitor.stop().catch(() => {});
    await this.proxy?.stop().catch(() => {});
    if (this.#databaseName) await this.server.dropDatabase(this.#databaseName).catch(() => {});
    if (this.#ownDataDir && this.dataDir) await rm(this.dataDir, { recursive: true, force: true });
  }

  async #settle(): Promise<ScenarioResult> {
    const pool = new pg.Pool({ connectionString: this.databaseUrl, max: 1 });
    pool.on('error', () => {});
    let rows: string[];
    try {
      rows = (await pool.query<{ id: string }>('SELECT id::text AS id FROM events')).rows.map((row) => row.id);
    } finally {
      await pool.end();
    }
    const stored = new Set(rows);
    const deadLettered = await deadLetteredIds(path.join(this.dataDir, 'dlq'));
    const { acknowledged, poisonAcknowledged, sent } = this.load;
    const lost = [...acknowledged].filter((id) => (poisonAcknowledged.has(id) ? !deadLettered.has(id) : !stored.has(id)));
    const unknown = [...stored].filter((id) => !sent.has(id));
    const poisonStored = [...poisonAcknowledged].filter((id) => stored.has(id));
    if (lost.length > 0) this.problems.push(`${lost.length} acknowledged events neither stored nor dead-lettered (first: ${lost[0]})`);
    if (unknown.length > 0) this.problems.push(`${unknown.length} stored events were never sent`);
    if (rows.length !== stored.size) this.problems.push(`${rows.length - stored.size} events stored twice`);
    if (poisonStored.length > 0) this.problems.push(`${poisonStored.length} events the database must refuse were stored`);
    if (this.load.unexpected5xx > 0) this.problems.push(`${this.load.unexpected5xx} answers 5xx other than 503`);
    if (this.monitor.slowHealth > 0) this.problems.push(`/healthz slower than 1 s (or failed) ${this.monitor.slowHealth} times while up`);
    const refusals = [...this.load.statuses].filter(([status]) => status !== 202).sort(([a], [b]) => a - b).map(([status, n]) => `${n}×${status}`);
    if (this.load.errors > 0) refusals.push(`${this.load.errors} no answer`);
    return {
      scenario: this.name,
      acknowledged: acknowledged.size,
      stored: stored.size,
      deadLettered: deadLettered.size,
      lost: lost.length,
      duplicated: rows.length - stored.size,
      unknown: unknown.length,
      unexpected5xx: this.load.unexpected5xx,
      refusals: refusals.join(', ') || 'none',
      maxRssMiB: this.monitor.maxRssBytes / 2 ** 20,
      recoveryMs: this.recoveryMs,
      drainedMs: this.drainedMs,
      slowHealth: this.monitor.slowHealth,
      maxHealthMs: this.monitor.maxHealthMs,
      notes: this.notes,
      problems: this.problems,
    };
  }
}

/** The ids in the dead-letter files (one JSON record a line, the event under `event`). */
async function deadLetteredIds(directory: string): Promise<Set<string>> {
  const ids = new Set<string>();
  let files: string[];
  try {
    files = (await readdir(directory)).filter((name) => name.endsWith('.ndjson'));
  } catch {
    return ids;
  }
  for (const file of files) {
    for (const line of (await readFile(path.join(directory, file), 'utf8')).split('\n')) {
      if (line.trim() === '') continue;
      const id = (JSON.parse(line) as { event?: { id?: string } }).event?.id;
      if (id) ids.add(id);
    }
  }
  return ids;
}

/** Wait `ms`, then a heal: the moment the fault ended. */
export async function hold(ms: number): Promise<void> {
  await sleep(ms);
}

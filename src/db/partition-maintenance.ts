import pg from 'pg';
import type { Logger } from 'pino';
import type { Clock, TimerHandle } from '../clock.ts';
import { sqlstateOf } from './failure-class.ts';

const DAY_MS = 86_400_000;
/** Held (pg_try_advisory_lock) for one maintenance run: replicas starting together take turns, one does the work. */
const MAINTENANCE_LOCK_KEY = 7_301_942_015;
const LOCK_NOT_AVAILABLE = '55P03';

export interface PartitionMaintenanceOptions {
  /** Daily partitions kept ready: today (UTC) and this many days after it. */
  readonly daysAhead: number;
  /** Drop partitions whose whole range is older than this many days; undefined: keep everything. */
  readonly retentionDays: number | undefined;
  /** How often a running service repeats the maintenance. */
  readonly intervalMs: number;
  /** How long a DDL statement waits for its lock before it gives up until the next run (writers queue behind it). */
  readonly lockTimeoutMs: number;
}

export interface MaintenanceReport {
  /** Another instance held the maintenance lock: this run did nothing. */
  readonly skipped: boolean;
  readonly created: readonly string[];
  readonly dropped: readonly string[];
  /** Rows moved out of the default partition into a partition created for their day. */
  readonly movedFromDefault: number;
  /** A DDL statement gave up on its lock (lockTimeoutMs); the next run tries again. */
  readonly lockTimeouts: number;
}

interface PartitionRow {
  name: string;
  isDefault: boolean;
  /** null: MINVALUE (the legacy partition) or the default. */
  lower: Date | null;
  upper: Date | null;
  detachPending: boolean;
}

/** events_pYYYYMMDD: the partition holding occurred_at in [day, day + 1) UTC. */
export function partitionName(dayStartMs: number): string {
  return `events_p${new Date(dayStartMs).toISOString().slice(0, 10).replaceAll('-', '')}`;
}

export function dayStart(ms: number): number {
  return Math.floor(ms / DAY_MS) * DAY_MS;
}

const quote = (identifier: string) => pg.escapeIdentifier(identifier);

/**
 * Keeps the daily partitions of `events` (migration 0004): creates today's and `daysAhead` more,
 * and with `retentionDays` drops whole partitions past it (never deletes rows). Run once at start and then
 * every `intervalMs` on the injected clock. Creating a day's partition while the DEFAULT partition holds
 * rows of that day would fail, so the rows are moved out of the default in the same transaction.
 */
export class PartitionMaintenance {
  readonly #pool: pg.Pool;
  readonly #options: PartitionMaintenanceOptions;
  readonly #clock: Clock;
  readonly #logger: Pick<Logger, 'info' | 'warn' | 'error'>;
  #timer: TimerHandle | undefined;
  #running: Promise<unknown> | undefined;
  #stopped = false;

  constructor(pool: pg.Pool, options: PartitionMaintenanceOptions, clock: Clock, logger: Pick<Logger, 'info' | 'warn' | 'error'>) {
    this.#pool = pool;
    this.#options = options;
    this.#clock = clock;
    this.#logger = logger;
  }

  /** Repeat runOnce every intervalMs until stop(); a failed run is logged and tried again next time. */
  start(): void {
    this.#stopped = false;
    this.#schedule();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer !== undefined) this.#clock.clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#running?.catch(() => {});
  }

  #schedule(): void {
    this.#timer = this.#clock.setTimeout(() => {
      this.#timer = undefined;
      this.#running = this.runOnce()
        .catch((error: unknown) => this.#logger.error({ err: error, code: 'PARTITION_ERR_MAINTENANCE' }, 'partition maintenance failed; trying again at the next run'))
        .finally(() => {
          if (!this.#stopped) this.#schedule();
        });
    }, this.#options.intervalMs);
  }

  /** Retention first (drop), then today's and the days-ahead partitions (create). */
  runOnce(): Promise<MaintenanceReport> {
    const today = dayStart(this.#clock.now());
    const days = Array.from({ length: this.#options.daysAhead + 1 }, (_, i) => today + i * DAY_MS);
    return this.#locked(async (client, report) => {
      if (this.#options.retentionDays !== undefined) await this.#applyRetention(client, today - this.#options.retentionDays * DAY_MS, report);
      for (const day of days) await this.#createDay(client, day, report);
      const defaultName = (await this.#partitions(client)).find((p) => p.isDefault)?.name;
      if (defaultName !== undefined) {
        const { rows } = await client.query<{ held: boolean }>(`SELECT EXISTS (SELECT 1 FROM ${quote(defaultName)}) AS held`);
        if (rows[0]!.held) {
          this.#logger.warn(
            { code: 'PARTITION_WARN_DEFAULT_ROWS', partition: defaultName },
            'the default partition holds events outside every daily partition (late, far-future, or from before partitioning); retention cannot drop them: run `npm run partitions -- split-default` (runbook.md)',
          );
        }
      }
    });
  }

  /**
   * Create a daily partition for every day the DEFAULT partition holds rows of, moving them there
   * (the operator's answer to a default partition that fills: runbook.md). Retention then drops the old ones whole.
   */
  splitDefault(): Promise<MaintenanceReport> {
    return this.#locked(async (client, report) => {
      const defaultName = (await this.#partitions(client)).find((p) => p.isDefault)?.name;
      if (defaultName === undefined) return;
      const { rows } = await client.query<{ day: string }>(
        `SELECT DISTINCT floor(extract(epoch FROM occurred_at) / 86400)::bigint AS day FROM ${quote(defaultName)} ORDER BY 1`,
      );
      for (const { day } of rows) await this.#createDay(client, Number(day) * DAY_MS, report);
    });
  }

  async #locked(work: (client: pg.PoolClient, report: { created: string[]; dropped: string[]; movedFromDefault: number; lockTimeouts: number }) => Promise<void>): Promise<MaintenanceReport> {
    const report = { skipped: false, created: [] as string[], dropped: [] as string[], movedFromDefault: 0, lockTimeouts: 0 };
    const client = await this.#pool.connect();
    let healthy = true;
    try {
      const { rows } = await client.query<{ locked: boolean }>('SELECT pg_try_advisory_lock($1) AS locked', [MAINTENANCE_LOCK_KEY]);
      if (!rows[0]!.locked) return { ...report, skipped: true };
      try {
        await client.query(`SET lock_timeout = ${Math.max(1, Math.trunc(this.#options.lockTimeoutMs))}`);
        // The service's pool sets statement_timeout (DB_STATEMENT_TIMEOUT_MS) for its writes; moving a
        // large day out of the default partition may take longer, and would never finish under it.
        await client.query('SET statement_timeout = 0');
        await work(client, report);
      } finally {
        await client.query('RESET lock_timeout');
        await client.query('RESET statement_timeout');
        await client.query('SELECT pg_advisory_unlock($1)', [MAINTENANCE_LOCK_KEY]);
      }
      if (report.created.length > 0 || report.dropped.length > 0) this.#logger.info(report, 'partition maintenance');
      return report;
    } catch (error) {
      healthy = false;
      throw error;
    } finally {
      client.release(!healthy);
    }
  }

  async #partitions(client: pg.PoolClient): Promise<PartitionRow[]> {
    const { rows } = await client.query<PartitionRow>(
      `SELECT c.relname AS name,
              pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT' AS "isDefault",
              (regexp_match(pg_get_expr(c.relpartbound, c.oid), 'FROM \\(''([^'']+)''\\)'))[1]::timestamptz AS lower,
              (regexp_match(pg_get_expr(c.relpartbound, c.oid), 'TO \\(''([^'']+)''\\)'))[1]::timestamptz AS upper,
              i.inhdetachpending AS "detachPending"
         FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'events'::regclass`,
    );
    return rows;
  }

  /** One transaction: create the table, move the default's rows of that day into it, attach it. */
  async #createDay(client: pg.PoolClient, day: number, report: { created: string[]; movedFromDefault: number; lockTimeouts: number }): Promise<void> {
    const name = partitionName(day);
    const from = new Date(day).toISOString();
    const to = new Date(day + DAY_MS).toISOString();
    const partitions = await this.#partitions(client);
    if (partitions.some((p) => p.name === name)) return;
    const defaultName = partitions.find((p) => p.isDefault)?.name;
    await this.#ddl(client, report, async () => {
      await client.query(`CREATE TABLE ${quote(name)} (LIKE events INCLUDING DEFAULTS INCLUDING CONSTRAINTS)`);
      if (defaultName !== undefined) {
        // No writer may add a row of this day to the default between the move and the ATTACH
        // (the ATTACH would fail with 23514); the lock waits at most lock_timeout like the others.
        await client.query(`LOCK TABLE ${quote(defaultName)} IN SHARE ROW EXCLUSIVE MODE`);
        const moved = await client.query(
          `WITH moved AS (DELETE FROM ${quote(defaultName)} WHERE occurred_at >= $1 AND occurred_at < $2 RETURNING *)
           INSERT INTO ${quote(name)} SELECT * FROM moved`,
          [from, to],
        );
        report.movedFromDefault += moved.rowCount ?? 0;
      }
      await client.query(`ALTER TABLE events ATTACH PARTITION ${quote(name)} FOR VALUES FROM ('${from}') TO ('${to}')`);
      report.created.push(name);
    });
  }

  /**
   * Drop every partition whose upper bound is at or before `cutoff`. DETACH … CONCURRENTLY (no lock that
   * stops writers) is refused by PostgreSQL while a DEFAULT partition exists, which ours always does, so
   * it is not tried: DETACH and DROP in one transaction, which holds the parent's ACCESS EXCLUSIVE lock
   * for a moment (catalog work only, no rows read) and gives up after lockTimeoutMs rather than queue
   * writers behind it. A detach left pending by someone else's interrupted DETACH … CONCURRENTLY is
   * finished (FINALIZE) and dropped.
   */
  async #applyRetention(client: pg.PoolClient, cutoff: number, report: { dropped: string[]; lockTimeouts: number }): Promise<void> {
    const partitions = await this.#partitions(client);
    for (const partition of partitions) {
      if (partition.isDefault || partition.upper === null || partition.upper.getTime() > cutoff) continue;
      const table = quote(partition.name);
      if (partition.detachPending) {
        // A DETACH … CONCURRENTLY interrupted earlier (an operator's: this code never starts one): finish it.
        await client.query(`ALTER TABLE events DETACH PARTITION ${table} FINALIZE`);
        await this.#dropWithCounts(client, table, partition);
      } else {
        const done = await this.#ddl(client, report, async () => {
          await client.query(`ALTER TABLE events DETACH PARTITION ${table}`);
          await this.#dropTableAndCounts(client, table, partition);
        });
        if (!done) continue;
      }
      report.dropped.push(partition.name);
    }
  }

  /** DROP the detached partition and its minutes' counts in one transaction (the counts are the partition's alone). */
  async #dropWithCounts(client: pg.PoolClient, table: string, partition: PartitionRow): Promise<void> {
    await client.query('BEGIN');
    try {
      await this.#dropTableAndCounts(client, table, partition);
      await client.query('COMMIT');
    } catch (error) {
      await client.query('ROLLBACK');
      throw error;
    }
  }

  /**
   * Inside a transaction. event_counts (migration 0005, ROLLUPS=on) must keep equalling the counts of
   * `events`, so the minutes of the dropped day go with it: its range held every event of those minutes
   * (the default partition takes only rows no partition's range covers, and day bounds are whole
   * minutes), so deleting that range of count rows is exact, without reading a row of the partition.
   */
  async #dropTableAndCounts(client: pg.PoolClient, table: string, partition: PartitionRow): Promise<void> {
    await client.query(`DROP TABLE ${table}`);
    const { rows } = await client.query<{ exists: boolean }>(`SELECT to_regclass('event_counts') IS NOT NULL AS exists`);
    if (rows[0]?.exists !== true || partition.upper === null) return;
    await client.query('DELETE FROM event_counts WHERE minute < $1 AND ($2::timestamptz IS NULL OR minute >= $2)', [partition.upper, partition.lower]);
  }

  /** Run `work` in a transaction; false when a lock was not granted within lock_timeout (rolled back, counted). */
  async #ddl(client: pg.PoolClient, report: { lockTimeouts: number }, work: () => Promise<void>): Promise<boolean> {
    await client.query('BEGIN');
    try {
      await work();
      await client.query('COMMIT');
      return true;
    } catch (error) {
      await client.query('ROLLBACK');
      if (sqlstateOf(error) !== LOCK_NOT_AVAILABLE) throw error;
      report.lockTimeouts += 1;
      this.#logger.warn({ code: 'PARTITION_WARN_LOCK_TIMEOUT' }, 'partition maintenance gave up on a lock (lock_timeout); it tries again at the next run');
      return false;
    }
  }
}

import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { copyPayload } from './copy-payload.ts';
import { isPermanentFailure, sqlstateOf } from '../db/failure-class.ts';
import { onCheckedOutClientError } from '../db/pool.ts';
import { EVENT_COLUMNS } from '../event/copy-row.ts';
import type { QueuedEvent } from '../event/queued-event.ts';
import { addBatchCounts, moveAndCountSql } from './minute-rollup.ts';
import { NOTHING_DEAD_LETTERED, type Sink, type WriteResult } from './sink.ts';
import { IngestInternalError } from '../internal-errors.ts';
import { appendLinks, tenantsOf, type AppendResult, type ChainHead, type HeadAnomaly } from '../audit/chain-writer.ts';
import { leafSql } from '../audit/leaf-hash.ts';

const COLUMN_LIST = EVENT_COLUMNS.join(', ');
const CREATE_STAGE = `CREATE TEMP TABLE IF NOT EXISTS events_stage (LIKE events) ON COMMIT DELETE ROWS`;
const COPY_INTO_STAGE = `COPY events_stage (${COLUMN_LIST}) FROM STDIN`;
const COPY_INTO_EVENTS = `COPY events (${COLUMN_LIST}) FROM STDIN`;
// An event's key is its table's primary key, the only unique index on `events`: (tenant, id) up to
// migration 0003 (an id is one tenant's, never checked against another's), (tenant, id, occurred_at)
// once 0004 partitions the table by occurred_at (a partitioned table's key must hold the partition
// key; a retried event carries the client's same occurred_at). No conflict target is named, so the
// statement is the same for both keys (bench/partition-copy.ts compares them with it). ON CONFLICT DO
// NOTHING skips keys stored earlier and, within one statement, a key repeated later in the batch
// (the first one wins; DO NOTHING, unlike DO UPDATE, allows that).
const MOVE_STAGE_TO_EVENTS = `INSERT INTO events (${COLUMN_LIST})
  SELECT ${COLUMN_LIST} FROM events_stage
  ON CONFLICT DO NOTHING`;
// With rollups: the same move and the counts of what it inserted (and only that) in one statement,
// then COMMIT in the same round trip.
const MOVE_STAGE_TO_EVENTS_COUNTED = `${moveAndCountSql(MOVE_STAGE_TO_EVENTS)}; COMMIT`;
// With the audit chain: the key and the leaf of every row inserted (computed by RETURNING from the
// row as stored; chain-writer.ts), with rollups counted in the same statement.
const chainedReturning = (alias: string) => `id::text, tenant, occurred_at::text, ${leafSql(alias)}`;
const MOVE_STAGE_TO_EVENTS_CHAINED = `${MOVE_STAGE_TO_EVENTS}
  RETURNING ${chainedReturning('events')}`;
const MOVE_STAGE_TO_EVENTS_CHAINED_COUNTED = moveAndCountSql(MOVE_STAGE_TO_EVENTS, chainedReturning('moved'), '*');
const UNIQUE_VIOLATION = '23505';
const NOTHING_APPENDED: AppendResult = { heads: [], anomalies: [] };

/** What the sink does for the audit chain (AUDIT_CHAIN=on). */
export interface AuditChainOptions {
  /** The tenants' new heads, once the transaction that appended them has committed. */
  readonly onCommitted?: (heads: readonly ChainHead[]) => void;
  /**
   * Heads found not pointing at their tenant's last link (deleted or edited behind the service),
   * once the transaction that found them (and recovered the missing or behind ones) has committed:
   * to log and count (src/audit/head-anomalies.ts).
   */
  readonly onHeadAnomalies?: (anomalies: readonly HeadAnomaly[]) => void;
}

/** Roll back a refused batch; false when even that fails (then the connection is discarded). */
async function rollback(client: pg.PoolClient): Promise<boolean> {
  try {
    await client.query('ROLLBACK');
    return true;
  } catch {
    return false;
  }
}

export class CopyTimeoutError extends IngestInternalError {
  constructor(message: string, options: { cause?: unknown } = {}) {
    super('SINK_ERR_COPY_TIMEOUT', message, options);
  }
}

/**
 * Writes a batch in one transaction. Most batches hold no key that is already stored, so the
 * first try is a plain COPY into `events` (BEGIN, COPY, COMMIT). A batch holding a duplicate
 * key (tenant, id, occurred_at) fails that COPY with 23505; it is rolled back and written the idempotent way: COPY
 * into a per-connection temporary staging table, then one INSERT … ON CONFLICT DO NOTHING (BEGIN,
 * COPY, INSERT+COMMIT, plus one CREATE on a new connection). While batches keep holding duplicates
 * (a WAL replay, clients re-sending) the staged way is tried first, so they do not pay twice;
 * the first batch stored without a duplicate switches back. The staged way costs PostgreSQL
 * ~30 % more CPU per row than the plain COPY (measured, README).
 * A connection that failed for any reason but refused data, or timed out, is destroyed, never returned
 * to the pool; after a refusal (class 22/23/42) the transaction is rolled back and the connection kept.
 *
 * With `rollups`, the per-minute counts of what the transaction inserted are added to event_counts
 * before its COMMIT (minute-rollup.ts): after a plain COPY, the batch's own rows (all inserted);
 * the staged way, the rows its INSERT inserted, counted in the same statement (a key already stored is not counted again).
 *
 * With `auditChain`, the same rows (after a plain COPY, its payload copied into the staging table
 * too and hashed from there; the staged way, the keys and leaves its INSERT returned) are appended to their tenants' hash chains before the COMMIT, after
 * the rollups (src/audit/chain-writer.ts): a duplicate never takes a place in a chain, and a batch
 * that rolls back takes its links with it.
 */
export class PostgresCopySink implements Sink {
  readonly #pool: pg.Pool;
  readonly #copyTimeoutMs: number;
  readonly #staged = new WeakSet<pg.PoolClient>();
  /** The last batch held a stored key: write the next one the staged way first. */
  #expectDuplicates = false;
  readonly #rollups: boolean;
  readonly #chain: AuditChainOptions | undefined;
  /** Tenants whose chain head row exists (a transaction appending to it committed): see appendLinks. */
  readonly #knownHeads = new Set<string>();

  constructor(pool: pg.Pool, options: { copyTimeoutMs: number; rollups?: boolean; auditChain?: AuditChainOptions | undefined }) {
    this.#pool = pool;
    this.#copyTimeoutMs = options.copyTimeoutMs;
    this.#rollups = options.rollups ?? false;
    this.#chain = options.auditChain;
  }

  async #ensureStage(client: pg.PoolClient): Promise<void> {
    if (this.#staged.has(client)) return;
    await client.query(CREATE_STAGE);
    this.#staged.add(client);
  }

  #committed({ heads, anomalies }: AppendResult): void {
    if (anomalies.length > 0) this.#chain?.onHeadAnomalies?.(anomalies);
    if (heads.length === 0) return;
    for (const head of heads) this.#knownHeads.add(head.tenant);
    this.#chain?.onCommitted?.(heads);
  }

  async write(batch: readonly QueuedEvent[], { signal }: { signal: AbortSignal }): Promise<WriteResult> {
    signal.throwIfAborted();
    const client = await this.#pool.connect();
    let released = false;
    // Destroying the connection is how a write is abandoned: whatever query is running on it
    // (COPY, or an INSERT stuck behind a lock) fails at once, and the server ends the session.
    const discard = (reason: unknown) => {
      if (released) return;
      released = true;
      client.release(reason instanceof Error ? reason : new Error(String(reason)));
    };
    // The connection dying under us (backend killed, server restarting) rejects the query in
    // flight; without this listener it would also be an uncaught 'error' on the client.
    let broken: Error | undefined;
    const stopListening = onCheckedOutClientError(client, (error) => {
      broken ??= error;
      discard(error);
    });
    const timeout = AbortSignal.timeout(this.#copyTimeoutMs);
    const deadline = AbortSignal.any([signal, timeout]);
    const onDeadline = () => discard(deadline.reason);
    deadline.addEventListener('abort', onDeadline, { once: true });
    try {
      deadline.throwIfAborted();
      const payload = copyPayload(batch);
      if (!this.#expectDuplicates) {
        // Before BEGIN: a CREATE inside a transaction that rolls back would be undone with it.
        if (this.#chain) await this.#ensureStage(client);
        await client.query('BEGIN');
        try {
          await pipeline(Readable.from(payload), client.query(copyFrom(COPY_INTO_EVENTS)), { signal: deadline });
          if (this.#rollups) await addBatchCounts(client, batch);
          let appended: AppendResult = NOTHING_APPENDED;
          if (this.#chain) {
            // The leaves are hashed from the same payload copied into the staging table (every row
            // of it was inserted): no probe of `events` per row (chain-writer.ts).
            await pipeline(Readable.from(payload), client.query(copyFrom(COPY_INTO_STAGE)), { signal: deadline });
            appended = await appendLinks(client, tenantsOf(batch), 'stage', batch.length, this.#knownHeads);
          }
          await client.query('COMMIT');
          this.#committed(appended);
          return { inserted: batch.length, deadLettered: NOTHING_DEAD_LETTERED };
        } catch (error) {
          // A stored (or repeated) key: not a refusal of the data, just the slow way's job.
          if (broken !== undefined || deadline.aborted || sqlstateOf(error) !== UNIQUE_VIOLATION || !(await rollback(client))) throw error;
        }
      }
      await this.#ensureStage(client);
      await client.query('BEGIN');
      await pipeline(Readable.from(payload), client.query(copyFrom(COPY_INTO_STAGE)), { signal: deadline });
      if (this.#chain) {
        const text = this.#rollups ? MOVE_STAGE_TO_EVENTS_CHAINED_COUNTED : MOVE_STAGE_TO_EVENTS_CHAINED;
        const moved = await client.query<[string, string, string, Buffer]>({ text, rowMode: 'array' });
        const returned = {
          ids: moved.rows.map((row) => row[0]),
          tenants: moved.rows.map((row) => row[1]),
          occurredAts: moved.rows.map((row) => row[2]),
          leaves: moved.rows.map((row) => row[3]),
        };
        const appended = await appendLinks(client, [...new Set(returned.tenants)], returned, moved.rows.length, this.#knownHeads);
        await client.query('COMMIT');
        this.#committed(appended);
        const inserted = moved.rowCount ?? 0;
        this.#expectDuplicates = inserted < batch.length;
        return { inserted, deadLettered: NOTHING_DEAD_LETTERED };
      }
      if (this.#rollups) {
        const results = (await client.query(MOVE_STAGE_TO_EVENTS_COUNTED)) as unknown as pg.QueryResult<{ inserted: number }>[];
        const inserted = results[0]?.rows[0]?.inserted ?? 0;
        this.#expectDuplicates = inserted < batch.length;
        return { inserted, deadLettered: NOTHING_DEAD_LETTERED };
      }
      const results = (await client.query(`${MOVE_STAGE_TO_EVENTS}; COMMIT`)) as unknown as pg.QueryResult[];
      const inserted = results[0]?.rowCount ?? 0;
      this.#expectDuplicates = inserted < batch.length;
      return { inserted, deadLettered: NOTHING_DEAD_LETTERED };
    } catch (error) {
      // The database refused the data (a constraint, a bad value): the connection is healthy, the
      // transaction just needs rolling back. Poison isolation splits such batches many times, and
      // a new backend per failed half cost ~4x a good write. Any other failure leaves the
      // connection in an unknown state (mid-COPY, timed out, broken): destroy it.
      if (broken === undefined && !deadline.aborted && isPermanentFailure(error) && (await rollback(client))) {
        released = true;
        client.release();
      } else {
        discard(error);
      }
      if (timeout.aborted) {
        throw new CopyTimeoutError(`writing ${batch.length} events did not finish within ${this.#copyTimeoutMs} ms`, {
          cause: error,
        });
      }
      throw error;
    } finally {
      deadline.removeEventListener('abort', onDeadline);
      stopListening();
      if (!released) {
        released = true;
        client.release();
      }
    }
  }
}


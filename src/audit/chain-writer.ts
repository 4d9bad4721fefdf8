import type pg from 'pg';
import { IngestInternalError } from '../internal-errors.ts';
import { leafSql } from './leaf-hash.ts';

/** A tenant's head after a committed append: what a checkpoint signs. */
export interface ChainHead {
  readonly tenant: string;
  readonly seq: bigint;
  readonly hash: Buffer;
  /** Events the link just appended holds. */
  readonly events: number;
}

/**
 * The chain statement found fewer (or more) of the transaction's rows than it inserted: the
 * transaction is abandoned (rolled back with its events) and the write retried, never committed
 * with events outside the chain.
 */
export class AuditChainMismatchError extends IngestInternalError {
  constructor(message: string) {
    super('AUDIT_ERR_CHAIN_MISMATCH', message);
  }
}

/**
 * The events a transaction's staged INSERT inserted, as its RETURNING gave them: key columns (the
 * time as PostgreSQL's text of it, cast back losslessly in the same session) and each row's leaf,
 * computed by that RETURNING from the row as stored.
 */
export interface StoredLeaves {
  readonly ids: readonly string[];
  readonly tenants: readonly string[];
  readonly occurredAts: readonly string[];
  readonly leaves: readonly Buffer[];
}

// The batch's tenants in the database's own order of text (the same for every writer), so that two
// transactions lock heads in one order and never deadlock. DO UPDATE locks an existing head as
// well as a new one; RETURNING hands back its seq and hash as they were.
const LOCK_HEADS = `INSERT INTO audit_chain_heads AS h (tenant)
  SELECT t FROM unnest($1::text[]) AS t ORDER BY 1
  ON CONFLICT (tenant) DO UPDATE SET updated_at = now()
  RETURNING h.tenant, h.seq, h.hash`;

// In one statement, for the events the transaction inserted and the tenants' heads: each event's
// leaf, the rows grouped per tenant in the canonical order (id, occurred_at); one link per tenant with
//   root = sha256(leaf_1 || … || leaf_n), hash = sha256(prev_hash || int8(seq) || root || int8(n))
// (int8send: big-endian, as leaf-hash.ts's linkHash, which the verifier recomputes it with); the
// heads moved to the new links. Nothing of the rows goes through Node.
//
// Where the leaves come from (`stored`), never a read-back of `events` by key: such a probe took the
// (tenant, occurred_at) index and filtered ~160 rows per probe when many events of one tenant share
// one occurred_at (a 5-6× PostgreSQL CPU per chained event through the service, README "Tamper
// evidence"), and ANALYZE did not change the plan.
// - STORED_FROM_STAGE (after a plain COPY, which inserted every row of the batch): the same payload
//   copied into the session's temporary staging table too (no index, no WAL), hashed from there.
//   Its columns have the events table's types, so each value is what `events` stored and the leaf
//   is the one the verifier recomputes from `events`.
// - STORED_FROM_RETURNED (the staged way, INSERT … ON CONFLICT DO NOTHING): the keys and leaves its
//   RETURNING computed from the rows it inserted ($1–$4), so a duplicate, or a key repeated in the
//   batch with other values, is hashed as what was stored.
const STORED_FROM_RETURNED = `stored AS (
    SELECT * FROM unnest($1::uuid[], $2::text[], $3::timestamptz[], $4::bytea[]) AS s (id, tenant, occurred_at, leaf)`;
const STORED_FROM_STAGE = `stored AS (
    SELECT tenant, id, occurred_at, ${leafSql('events_stage')} AS leaf FROM events_stage`;

// The heads, locked by the statement itself when every one of them exists (one round trip less
// per batch), else locked by LOCK_HEADS first and given as parameters ($n tenants, $n+1 seqs, $n+2
// hashes).
const headsFromParameters = (n: number) => `heads AS (
    SELECT tenant, seq + 1 AS seq, hash AS prev FROM unnest($${n}::text[], $${n + 1}::bigint[], $${n + 2}::bytea[]) AS h (tenant, seq, hash)
  )`;
// FOR UPDATE in sorted tenant order ($n), as LOCK_HEADS (the rows are locked as the sort returns
// them). Under READ COMMITTED a head another transaction moved meanwhile is waited for and returned
// as that transaction committed it, and the UPDATE below rechecks the row the same way, so the link
// and the head agree. MATERIALIZED: evaluated once.
const lockedHeads = (n: number) => `locked AS MATERIALIZED (
    SELECT tenant, seq, hash FROM audit_chain_heads WHERE tenant = ANY($${n}::text[]) ORDER BY tenant FOR UPDATE
  ), `;
const HEADS_LOCKED_HERE = `heads AS (
    SELECT tenant, seq + 1 AS seq, hash AS prev FROM locked
  )`;

const appendLinksSql = (source: string, heads: string) => `WITH ${source}
  ), grouped AS (
    SELECT tenant, count(*)::integer AS n,
           array_agg(id ORDER BY id, occurred_at) AS ids,
           array_agg(occurred_at ORDER BY id, occurred_at) AS occurred_ats,
           array_agg(leaf ORDER BY id, occurred_at) AS leaves,
           sha256(string_agg(leaf, ''::bytea ORDER BY id, occurred_at)) AS root
      FROM stored GROUP BY tenant
  ), ${heads}, links AS (
    INSERT INTO audit_chain_links (tenant, seq, prev_hash, root, event_count, ids, occurred_ats, leaves, hash)
    SELECT g.tenant, h.seq, h.prev, g.root, g.n, g.ids, g.occurred_ats, g.leaves, sha256(h.prev || int8send(h.seq) || g.root || int8send(g.n::bigint))
      FROM grouped g JOIN heads h ON h.tenant = g.tenant
    RETURNING tenant, seq, hash, event_count
  )
  UPDATE audit_chain_heads h SET seq = l.seq, hash = l.hash, updated_at = now()
    FROM links l WHERE h.tenant = l.tenant
  RETURNING h.tenant, h.seq::text, h.hash, l.event_count`;

/** The four append statements, by where the leaves come from and how the heads are locked. */
const APPEND = {
  returned: {
    locking: { name: 'audit-append-returned-locking', text: appendLinksSql(lockedHeads(5) + STORED_FROM_RETURNED, HEADS_LOCKED_HERE) },
    given: { name: 'audit-append-returned', text: appendLinksSql(STORED_FROM_RETURNED, headsFromParameters(5)) },
  },
  stage: {
    locking: { name: 'audit-append-stage-locking', text: appendLinksSql(lockedHeads(1) + STORED_FROM_STAGE, HEADS_LOCKED_HERE) },
    given: { name: 'audit-append-stage', text: appendLinksSql(STORED_FROM_STAGE, headsFromParameters(1)) },
  },
} as const;

/**
 * The events a transaction inserted, to chain: 'stage' (exactly the rows of the session's staging
 * table events_stage, which the caller filled with the same payload it inserted whole), or what a
 * staged INSERT returned.
 */
export type LinkSource = 'stage' | StoredLeaves;

/**
 * Append one link per tenant of `tenants` to its chain, for the events this transaction inserted
 * (`source`, `count` of them), inside the caller's transaction: lock the heads, insert the links,
 * move the heads. The links commit or roll back with the events. Returns the new heads, to report
 * once committed.
 *
 * `knownHeads`: tenants whose head row is known to exist (the caller adds a tenant once a
 * transaction that appended to it has committed). When every tenant of the batch is in it, the
 * heads are locked by the append statement itself: one statement per batch instead of two. A
 * head that is gone after all (deleted behind the service) makes the count mismatch: the write
 * fails, retryable, and the tenants are forgotten so the retry creates the heads first.
 */
export async function appendLinks(
  client: pg.ClientBase,
  tenants: readonly string[],
  source: LinkSource,
  count: number,
  knownHeads?: Set<string>,
): Promise<ChainHead[]> {
  if (count === 0) return [];
  const statements = source === 'stage' ? APPEND.stage : APPEND.returned;
  const leading: unknown[] = source === 'stage' ? [] : [source.ids, source.tenants, source.occurredAts, source.leaves];
  let moved: pg.QueryResult<[string, string, Buffer, number]>;
  if (knownHeads !== undefined && tenants.every((tenant) => knownHeads.has(tenant))) {
    moved = await client.query<[string, string, Buffer, number]>({ ...statements.locking, values: [...leading, tenants], rowMode: 'array' });
  } else {
    const locked = await client.query<[string, string, Buffer]>({ name: 'audit-lock-heads', text: LOCK_HEADS, values: [tenants], rowMode: 'array' });
    const heads = [locked.rows.map((row) => row[0]), locked.rows.map((row) => row[1]), locked.rows.map((row) => row[2])];
    moved = await client.query<[string, string, Buffer, number]>({ ...statements.given, values: [...leading, ...heads], rowMode: 'array' });
  }
  const heads = moved.rows.map(([tenant, seq, hash, events]) => ({ tenant, seq: BigInt(seq), hash, events }));
  const chained = heads.reduce((sum, head) => sum + head.events, 0);
  if (chained !== count) {
    for (const tenant of tenants) knownHeads?.delete(tenant);
    throw new AuditChainMismatchError(`audit chain: ${chained} of the ${count} events this transaction inserted were found to chain`);
  }
  return heads;
}

/** The distinct tenants of a batch. */
export function tenantsOf(events: readonly { readonly tenant: string }[]): string[] {
  return [...new Set(events.map((event) => event.tenant))];
}

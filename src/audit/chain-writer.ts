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
 * The keys of the events a transaction inserted, one per line: `id \t tenant \t occurred_at`, as
 * the staged INSERT returns them (ids, tenants and validated times never hold a tab or newline).
 */
export type KeyLines = string;

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
// Where the leaves come from (`stored`):
// - STORED_FROM_STAGE (after a plain COPY, which inserted every row of the batch): the same payload
//   copied into the session's temporary staging table too (no index, no WAL), hashed from there.
//   Its columns have the events table's types, so each value is what `events` stored and the leaf
//   is the one the verifier recomputes from `events`.
// - STORED_FROM_KEYS (the staged way: the keys its INSERT returned, $1 KeyLines): each stored row
//   read back by key, one probe each (LATERAL … LIMIT 1; a plain join let the planner hash the whole
//   partition). The probe is at the planner's mercy: with many events of one tenant at one
//   occurred_at it took the (tenant, occurred_at) index and filtered ~160 rows per probe (a 5-6×
//   PostgreSQL CPU per chained event through the service, README "Tamper evidence"); the plain path
//   no longer probes.
const STORED_FROM_KEYS = `keys AS (
    SELECT split_part(line, E'\\t', 1)::uuid AS id, split_part(line, E'\\t', 2) AS tenant, split_part(line, E'\\t', 3)::timestamptz AS occurred_at
      FROM string_to_table($1::text, E'\\n') AS line
  ), stored AS (
    SELECT e.* FROM keys k CROSS JOIN LATERAL (
      SELECT tenant, id, occurred_at, ${leafSql('events')} AS leaf FROM events
       WHERE events.tenant = k.tenant AND events.id = k.id AND events.occurred_at = k.occurred_at LIMIT 1) AS e`;
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
  keys: {
    locking: { name: 'audit-append-keys-locking', text: appendLinksSql(lockedHeads(2) + STORED_FROM_KEYS, HEADS_LOCKED_HERE) },
    given: { name: 'audit-append-keys', text: appendLinksSql(STORED_FROM_KEYS, headsFromParameters(2)) },
  },
  stage: {
    locking: { name: 'audit-append-stage-locking', text: appendLinksSql(lockedHeads(1) + STORED_FROM_STAGE, HEADS_LOCKED_HERE) },
    given: { name: 'audit-append-stage', text: appendLinksSql(STORED_FROM_STAGE, headsFromParameters(1)) },
  },
} as const;

/**
 * The events a transaction inserted, to chain: `{ keys }` (their keys, read back from `events`), or
 * 'stage' (exactly the rows of the session's staging table events_stage, which the caller filled
 * with the same payload it inserted whole).
 */
export type LinkSource = { readonly keys: KeyLines } | 'stage';

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
  const statements = source === 'stage' ? APPEND.stage : APPEND.keys;
  const leading: unknown[] = source === 'stage' ? [] : [source.keys];
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

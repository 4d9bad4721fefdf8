import type pg from 'pg';
import { sqlstateOf } from '../db/failure-class.ts';
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
 * A link at the seq after a known head exists already: the head was moved back (edited) behind the
 * service. Rolled back and retried like AuditChainMismatchError, never taken for bad data (that
 * would dead-letter the batch); the tenants are forgotten, so the retry locks their heads first and
 * re-derives a head behind the last link from that link (checkHeads).
 */
export class AuditChainHeadStaleError extends IngestInternalError {
  constructor(message: string, options: { cause?: unknown } = {}) {
    super('AUDIT_ERR_CHAIN_HEAD_STALE', message, options);
  }
}

/**
 * A head that does not point at its tenant's last link, found when the head is locked before an
 * append (a tenant's first batch in this process, or the retry after a mismatch):
 *  - missing: no head row, yet the tenant has links (its row was deleted behind the service);
 *  - behind: the head's seq is before the last link's (the row was rewound);
 *  - ahead: the head's seq is past the last link's (links deleted from the end, or the row edited);
 *  - forked: the head's seq is the last link's, its hash is not (the row's hash edited, or the
 *    last link rewritten).
 * missing and behind are recovered (`recovered`): the head is moved to the last link in the same
 * transaction, and a row of audit_chain_head_recoveries records it. ahead and forked are left as
 * found: appending after them loses no link, and the chain itself then shows what happened to
 * `npm run audit -- verify` (link-missing at lastSeq + 1, link-broken at the appended link).
 */
export interface HeadAnomaly {
  readonly tenant: string;
  readonly found: 'missing' | 'behind' | 'ahead' | 'forked';
  readonly recovered: boolean;
  /** The head's seq as found (0 for missing). */
  readonly headSeq: bigint;
  /** The tenant's last link (0: none). */
  readonly lastSeq: bigint;
}

/** What an append did: the new heads and the anomalies it found on the way. */
export interface AppendResult {
  readonly heads: ChainHead[];
  readonly anomalies: HeadAnomaly[];
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
// well as a new one; RETURNING hands back its seq and hash as they were, and whether the row was
// created here (xmax = 0 only on a row this INSERT inserted, not on one DO UPDATE locked).
const LOCK_HEADS = `INSERT INTO audit_chain_heads AS h (tenant)
  SELECT t FROM unnest($1::text[]) AS t ORDER BY 1
  ON CONFLICT (tenant) DO UPDATE SET updated_at = now()
  RETURNING h.tenant, h.seq::text, h.hash, h.xmax = 0`;

// Each locked tenant's last link (one backward probe of the primary key each). A statement of its
// own, after LOCK_HEADS: its snapshot is taken once the heads are locked, so it sees every link
// committed before, and no other writer can append to these tenants until this transaction ends
// (a snapshot taken with LOCK_HEADS's would miss a link whose writer we waited for).
const LAST_LINKS = `SELECT t, l.seq::text, l.hash FROM unnest($1::text[]) AS t
  LEFT JOIN LATERAL (SELECT seq, hash FROM audit_chain_links WHERE tenant = t ORDER BY seq DESC LIMIT 1) AS l ON true`;

// Move the heads found missing or behind to their last links, and record each move.
const RECOVER_HEADS = `WITH moved AS (
    UPDATE audit_chain_heads h SET seq = r.seq, hash = r.hash, updated_at = now()
      FROM unnest($1::text[], $2::bigint[], $3::bytea[]) AS r (tenant, seq, hash) WHERE h.tenant = r.tenant
    RETURNING h.tenant
  )
  INSERT INTO audit_chain_head_recoveries (tenant, found, found_seq, found_hash, last_seq, last_hash)
  SELECT r.tenant, r.found, r.found_seq, r.found_hash, r.seq, r.hash
    FROM unnest($1::text[], $2::bigint[], $3::bytea[], $4::text[], $5::bigint[], $6::bytea[]) AS r (tenant, seq, hash, found, found_seq, found_hash)
    JOIN moved USING (tenant)`;

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
 * once committed, and the head anomalies found (checkHeads), to report likewise.
 *
 * `knownHeads`: tenants whose head row is known to exist (the caller adds a tenant once a
 * transaction that appended to it has committed). When every tenant of the batch is in it, the
 * heads are locked by the append statement itself: one statement per batch instead of two. A
 * head that is gone after all (deleted behind the service) makes the count mismatch, and one moved
 * back makes the next link collide with one that exists: either way the write fails, retryable,
 * and the tenants are forgotten so the retry locks the heads first and checks them against the
 * links (checkHeads).
 */
export async function appendLinks(
  client: pg.ClientBase,
  tenants: readonly string[],
  source: LinkSource,
  count: number,
  knownHeads?: Set<string>,
): Promise<AppendResult> {
  if (count === 0) return { heads: [], anomalies: [] };
  const statements = source === 'stage' ? APPEND.stage : APPEND.returned;
  const leading: unknown[] = source === 'stage' ? [] : [source.ids, source.tenants, source.occurredAts, source.leaves];
  const forget = () => {
    for (const tenant of tenants) knownHeads?.delete(tenant);
  };
  let moved: pg.QueryResult<[string, string, Buffer, number]>;
  let anomalies: HeadAnomaly[] = [];
  try {
    if (knownHeads !== undefined && tenants.every((tenant) => knownHeads.has(tenant))) {
      moved = await client.query<[string, string, Buffer, number]>({ ...statements.locking, values: [...leading, tenants], rowMode: 'array' });
    } else {
      const locked = await client.query<[string, string, Buffer, boolean]>({ name: 'audit-lock-heads', text: LOCK_HEADS, values: [tenants], rowMode: 'array' });
      const checked = await checkHeads(client, locked.rows);
      anomalies = checked.anomalies;
      const heads = checked.heads;
      moved = await client.query<[string, string, Buffer, number]>({ ...statements.given, values: [...leading, heads.map((h) => h.tenant), heads.map((h) => h.seq), heads.map((h) => h.hash)], rowMode: 'array' });
    }
  } catch (error) {
    if (sqlstateOf(error) === UNIQUE_VIOLATION && (error as { constraint?: unknown }).constraint === LINKS_KEY) {
      forget();
      throw new AuditChainHeadStaleError(
        'audit chain: the link after a tenant head of this batch exists already (the head was moved back behind the service); rolled back, the retry re-derives the head from the last link',
        { cause: error },
      );
    }
    throw error;
  }
  const heads = moved.rows.map(([tenant, seq, hash, events]) => ({ tenant, seq: BigInt(seq), hash, events }));
  const chained = heads.reduce((sum, head) => sum + head.events, 0);
  if (chained !== count) {
    forget();
    throw new AuditChainMismatchError(
      `audit chain: ${chained} of the ${count} events this transaction inserted were found to chain (a head row of the batch's tenants is gone: deleted behind the service?); rolled back, the retry locks the heads first`,
    );
  }
  return { heads, anomalies };
}

const UNIQUE_VIOLATION = '23505';
const LINKS_KEY = 'audit_chain_links_pkey';

/**
 * The locked heads (LOCK_HEADS's rows) against their tenants' last links, in the transaction that
 * holds their locks. A head that is missing (created just now while links exist) or behind the
 * last link is moved to that link and the move recorded (RECOVER_HEADS): appending after it as
 * found would collide with an existing link, a refusal the sink chain would take for bad data and
 * dead-letter. A head ahead of the last link or forked from it is appended after as found: that
 * loses no link and leaves the evidence in the chain (HeadAnomaly). Returns the heads to append
 * after.
 */
async function checkHeads(
  client: pg.ClientBase,
  locked: readonly (readonly [tenant: string, seq: string, hash: Buffer, created: boolean])[],
): Promise<{ heads: { tenant: string; seq: string; hash: Buffer }[]; anomalies: HeadAnomaly[] }> {
  const last = await client.query<[string, string | null, Buffer | null]>({ name: 'audit-last-links', text: LAST_LINKS, values: [locked.map((row) => row[0])], rowMode: 'array' });
  const lastOf = new Map(last.rows.map(([tenant, seq, hash]) => [tenant, { seq: BigInt(seq ?? '0'), hash }]));
  const heads: { tenant: string; seq: string; hash: Buffer }[] = [];
  const anomalies: HeadAnomaly[] = [];
  const recover = { tenants: [] as string[], seqs: [] as string[], hashes: [] as Buffer[], found: [] as string[], foundSeqs: [] as (string | null)[], foundHashes: [] as (Buffer | null)[] };
  for (const [tenant, seqText, hash, created] of locked) {
    const seq = BigInt(seqText);
    const link = lastOf.get(tenant) ?? { seq: 0n, hash: null };
    const found = created && link.seq > 0n ? 'missing' : seq < link.seq ? 'behind' : seq > link.seq ? 'ahead' : link.hash !== null && !link.hash.equals(hash) ? 'forked' : undefined;
    if (found === undefined) {
      heads.push({ tenant, seq: seqText, hash });
      continue;
    }
    const recovered = found === 'missing' || found === 'behind';
    anomalies.push({ tenant, found, recovered, headSeq: seq, lastSeq: link.seq });
    if (!recovered || link.hash === null) {
      heads.push({ tenant, seq: seqText, hash });
      continue;
    }
    heads.push({ tenant, seq: link.seq.toString(), hash: link.hash });
    recover.tenants.push(tenant);
    recover.seqs.push(link.seq.toString());
    recover.hashes.push(link.hash);
    recover.found.push(found);
    recover.foundSeqs.push(created ? null : seqText);
    recover.foundHashes.push(created ? null : hash);
  }
  if (recover.tenants.length > 0) {
    await client.query({
      name: 'audit-recover-heads',
      text: RECOVER_HEADS,
      values: [recover.tenants, recover.seqs, recover.hashes, recover.found, recover.foundSeqs, recover.foundHashes],
    });
  }
  return { heads, anomalies };
}

/** The distinct tenants of a batch. */
export function tenantsOf(events: readonly { readonly tenant: string }[]): string[] {
  return [...new Set(events.map((event) => event.tenant))];
}

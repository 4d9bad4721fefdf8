import type pg from 'pg';
import { digestOfLeaves, GENESIS_HASH, leafSql, linkHash } from './leaf-hash.ts';

/** What is wrong, at the first bad position found (links in seq order, then the head, checkpoints, unchained rows). */
export type FindingKind =
  | 'link-missing' // a seq is absent (a deleted or renumbered link)
  | 'link-broken' // prev_hash is not the previous link's hash (reordered, inserted or rewritten links)
  | 'link-altered' // the link's own columns do not give its hash, digest or count
  | 'row-missing' // a chained event is no longer in `events`
  | 'row-altered' // a chained event's stored columns no longer give its leaf
  | 'head-mismatch' // the head does not point at the last link
  | 'checkpoint-mismatch' // a signed checkpoint names a hash the chain does not have at its seq
  | 'tail-truncated' // a signed checkpoint names a seq past the end of the chain
  | 'row-unchained'; // a row of the tenant is in no link (inserted behind the service's back)

export interface EventKey {
  readonly id: string;
  readonly occurredAt: string;
}

export interface Finding {
  readonly kind: FindingKind;
  readonly seq?: bigint;
  readonly key?: EventKey;
  readonly message: string;
}

/** A checkpoint whose signature has been checked (checkpoints.ts). */
export interface TrustedCheckpoint {
  readonly tenant: string;
  readonly seq: bigint;
  readonly hash: Buffer;
  readonly time: string;
}

export interface VerifyOptions {
  readonly tenant: string;
  /** Only events with occurred_at at or after this are checked against their rows (retention, a long history). The links are always walked whole. */
  readonly since?: Date | undefined;
  readonly checkpoints?: readonly TrustedCheckpoint[];
  /** Look for rows in no link (default true). Off for a region that also holds rows applied from another region. */
  readonly checkUnchained?: boolean;
  /** Rows received before this are pre-chain history (the chain was turned on later) and may be unchained. */
  readonly unchainedBefore?: Date | undefined;
  /** Links read per round trip. */
  readonly pageSize?: number;
}

/** A row of audit_chain_head_recoveries: the service moved the tenant's head to its last link (chain-writer.ts). */
export interface HeadRecovery {
  /** missing: the head row had been deleted; behind: its seq had been moved back. */
  readonly found: 'missing' | 'behind';
  /** The head as found (undefined when missing). */
  readonly foundSeq?: bigint;
  /** The link the head was moved to, which the next link follows. */
  readonly lastSeq: bigint;
  readonly recoveredAt: string;
}

export interface VerifyReport {
  readonly ok: boolean;
  readonly links: number;
  readonly events: number;
  readonly lastSeq: bigint;
  readonly checkpointsChecked: number;
  readonly finding?: Finding;
  /**
   * Heads the service found deleted or moved back behind the service and re-derived from the last
   * link, oldest first. Not a finding (no link or row was changed, and the walk above checks every
   * one), but a record that someone changed audit_chain_heads.
   */
  readonly headRecoveries: readonly HeadRecovery[];
}

type LinkRow = [seq: string, prevHash: Buffer, root: Buffer, eventCount: number, hash: Buffer, leaves: Buffer[], keysMatch: boolean];

const LINKS_PAGE = `SELECT seq::text, prev_hash, root, event_count, hash, leaves, cardinality(ids) = event_count AND cardinality(occurred_ats) = event_count
  FROM audit_chain_links l WHERE l.tenant = $1 AND l.seq > $2::bigint ORDER BY l.seq LIMIT $3`;

// The first chained event of links [from, to] whose row is gone or whose stored columns no longer
// hash to the leaf the link holds.
// One index probe per key (LATERAL … LIMIT 1: a hash of the whole tenant per page would make the
// walk quadratic).
const BAD_ROW = `SELECT l.seq::text, k.id::text, k.occurred_at::text, e.leaf IS NULL AS missing
  FROM audit_chain_links l
  CROSS JOIN LATERAL unnest(l.ids, l.occurred_ats, l.leaves) WITH ORDINALITY AS k (id, occurred_at, leaf, ord)
  LEFT JOIN LATERAL (
    SELECT ${leafSql('events')} AS leaf FROM events
     WHERE events.tenant = l.tenant AND events.id = k.id AND events.occurred_at = k.occurred_at LIMIT 1) AS e ON true
 WHERE l.tenant = $1 AND l.seq BETWEEN $2::bigint AND $3::bigint AND ($4::timestamptz IS NULL OR k.occurred_at >= $4)
   AND e.leaf IS DISTINCT FROM k.leaf
 ORDER BY l.seq, k.ord LIMIT 1`;

const HEAD_RECOVERIES = `SELECT found, found_seq::text, last_seq::text, to_json(recovered_at) #>> '{}'
  FROM audit_chain_head_recoveries WHERE tenant = $1 ORDER BY id`;

// The first row of the tenant that no link holds.
const UNCHAINED_ROW = `WITH chained AS MATERIALIZED (
    SELECT k.id, k.occurred_at FROM audit_chain_links l
     CROSS JOIN LATERAL unnest(l.ids, l.occurred_ats) AS k (id, occurred_at) WHERE l.tenant = $1)
  SELECT e.id::text, e.occurred_at::text FROM events e
   WHERE e.tenant = $1 AND ($2::timestamptz IS NULL OR e.occurred_at >= $2) AND ($3::timestamptz IS NULL OR e.received_at >= $3)
     AND NOT EXISTS (SELECT 1 FROM chained c WHERE c.id = e.id AND c.occurred_at = e.occurred_at)
   ORDER BY e.occurred_at, e.id LIMIT 1`;

/**
 * Check one tenant's chain against the stored rows, in one REPEATABLE READ snapshot (writers may
 * go on appending meanwhile; what they append after the snapshot is checked next time):
 *  1. the links, in seq order from 1: no gap, each prev_hash the previous hash (the genesis: 32
 *     zero bytes), each hash, digest and count recomputed from the link's columns;
 *  2. every chained event (occurred_at ≥ since): its row exists and its leaf, recomputed by
 *     PostgreSQL from the stored columns, is the leaf the link holds;
 *  3. the head points at the last link;
 *  4. each signed checkpoint of the tenant names a link that exists with that hash: a deleted
 *     tail (links and rows), however consistent the rest, is caught here;
 *  5. no row of the tenant (occurred_at ≥ since) is outside every link.
 * Stops at the first bad position. Also lists the heads the service re-derived (audit_chain_head_recoveries).
 */
export async function verifyChain(pool: pg.Pool, options: VerifyOptions): Promise<VerifyReport> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    const report = await verifyIn(client, options);
    await client.query('COMMIT');
    return report;
  } finally {
    client.release();
  }
}

async function verifyIn(client: pg.ClientBase, options: VerifyOptions): Promise<VerifyReport> {
  const { tenant } = options;
  const since = options.since ?? null;
  const pageSize = options.pageSize ?? 500;
  const checkpoints = [...(options.checkpoints ?? [])].filter((c) => c.tenant === tenant).sort((a, b) => (a.seq < b.seq ? -1 : a.seq > b.seq ? 1 : 0));
  const wanted = new Map<string, Buffer>();
  let links = 0;
  let events = 0;
  let expected = 1n;
  let prevHash = GENESIS_HASH;
  const recoveries = await client.query<[string, string | null, string, string]>({ text: HEAD_RECOVERIES, values: [tenant], rowMode: 'array' });
  const headRecoveries: HeadRecovery[] = recoveries.rows.map(([found, foundSeq, lastSeq, recoveredAt]) => ({
    found: found === 'behind' ? 'behind' : 'missing',
    ...(foundSeq === null ? {} : { foundSeq: BigInt(foundSeq) }),
    lastSeq: BigInt(lastSeq),
    recoveredAt,
  }));
  const done = (finding?: Finding): VerifyReport => ({
    ok: finding === undefined,
    links,
    events,
    lastSeq: expected - 1n,
    checkpointsChecked: finding === undefined ? checkpoints.length : 0,
    ...(finding ? { finding } : {}),
    headRecoveries,
  });
  const checkpointSeqs = new Set(checkpoints.map((c) => c.seq.toString()));
  for (;;) {
    const page = await client.query<LinkRow>({ text: LINKS_PAGE, values: [tenant, (expected - 1n).toString(), pageSize], rowMode: 'array' });
    if (page.rows.length === 0) break;
    const first = expected;
    let structural: Finding | undefined;
    for (const [seqText, prev, root, count, hash, leaves, keysMatch] of page.rows) {
      const seq = BigInt(seqText);
      if (seq !== expected) {
        structural = { kind: 'link-missing', seq: expected, message: `link ${expected} is missing (the next one is ${seq})` };
        break;
      }
      if (!prev.equals(prevHash)) {
        structural = { kind: 'link-broken', seq, message: `link ${seq} does not follow link ${seq - 1n}: its prev_hash is not that link's hash (links reordered, inserted or rewritten)` };
        break;
      }
      if (leaves.length !== count || !keysMatch || !digestOfLeaves(leaves).equals(root) || !linkHash(prev, seq, root, count).equals(hash)) {
        structural = { kind: 'link-altered', seq, message: `link ${seq} was altered: its events, digest or count do not give its hash` };
        break;
      }
      if (checkpointSeqs.has(seqText)) wanted.set(seqText, hash);
      prevHash = hash;
      expected = seq + 1n;
      links += 1;
      events += count;
    }
    // A bad row in a link before the structural break is the earlier position.
    const last = structural?.seq ?? expected - 1n;
    if (last >= first) {
      const bad = await client.query<[string, string, string, boolean]>({ text: BAD_ROW, values: [tenant, first.toString(), last.toString(), since], rowMode: 'array' });
      const row = bad.rows[0];
      if (row) {
        const [seqText, id, occurredAt, missing] = row;
        const key = { id, occurredAt };
        return done({
          kind: missing ? 'row-missing' : 'row-altered',
          seq: BigInt(seqText),
          key,
          message: missing
            ? `event (${tenant}, ${id}, ${occurredAt}) of link ${seqText} is no longer stored (deleted)`
            : `event (${tenant}, ${id}, ${occurredAt}) of link ${seqText} was altered: its stored columns do not give its leaf hash`,
        });
      }
    }
    if (structural) return done(structural);
    if (page.rows.length < pageSize) break;
  }
  const lastSeq = expected - 1n;
  const head = await client.query<[string, Buffer]>({ text: 'SELECT seq::text, hash FROM audit_chain_heads WHERE tenant = $1', values: [tenant], rowMode: 'array' });
  const [headSeq, headHash] = head.rows[0] ?? ['0', GENESIS_HASH];
  if (BigInt(headSeq) !== lastSeq || !headHash.equals(prevHash)) {
    return done({ kind: 'head-mismatch', seq: BigInt(headSeq), message: `the head says seq ${headSeq} but the chain ends at link ${lastSeq} (links deleted or the head rewritten)` });
  }
  for (const checkpoint of checkpoints) {
    if (checkpoint.seq > lastSeq) {
      return done({
        kind: 'tail-truncated',
        seq: lastSeq + 1n,
        message: `a checkpoint signed at ${checkpoint.time} names link ${checkpoint.seq}, but the chain ends at link ${lastSeq}: links ${lastSeq + 1n}–${checkpoint.seq} and their events were deleted`,
      });
    }
    const hash = wanted.get(checkpoint.seq.toString());
    if (hash === undefined || !hash.equals(checkpoint.hash)) {
      return done({ kind: 'checkpoint-mismatch', seq: checkpoint.seq, message: `link ${checkpoint.seq} is not the one the checkpoint signed at ${checkpoint.time} names (the chain was rewritten up to there)` });
    }
  }
  if (options.checkUnchained ?? true) {
    const unchained = await client.query<[string, string]>({ text: UNCHAINED_ROW, values: [tenant, since, options.unchainedBefore ?? null], rowMode: 'array' });
    const row = unchained.rows[0];
    if (row) {
      const [id, occurredAt] = row;
      return done({ kind: 'row-unchained', key: { id, occurredAt }, message: `event (${tenant}, ${id}, ${occurredAt}) is in no link of the chain (inserted behind the service)` });
    }
  }
  return done();
}

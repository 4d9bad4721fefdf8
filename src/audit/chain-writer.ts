import type pg from 'pg';
import { digestOfLeaves, leafSql, linkHash } from './leaf-hash.ts';

/** One event a transaction inserted, with its leaf hash (computed by PostgreSQL on the stored row). */
export type ChainedRow = readonly [tenant: string, id: string, occurredAt: string, leaf: Buffer];

/** A tenant's head after a committed append: what a checkpoint signs. */
export interface ChainHead {
  readonly tenant: string;
  readonly seq: bigint;
  readonly hash: Buffer;
  /** Events the link just appended holds. */
  readonly events: number;
}

/**
 * The columns a staged INSERT … RETURNING hands back for the chain: key and leaf of every row it
 * inserted (and only those: a key skipped by ON CONFLICT DO NOTHING returns nothing).
 * `occurred_at::text` round-trips exactly within the session that reads it back.
 */
export const CHAIN_RETURNING = `tenant, id::text, occurred_at::text, ${leafSql('events')}`;

// The rows a plain COPY just stored (every row of the batch: COPY stores all or fails), read back
// by key in the same transaction for their leaves.
const LEAVES_OF_KEYS = `SELECT e.tenant, e.id::text, e.occurred_at::text, ${leafSql('e')}
  FROM unnest($1::text[], $2::uuid[], $3::timestamptz[]) AS k (tenant, id, occurred_at)
  JOIN events e ON e.tenant = k.tenant AND e.id = k.id AND e.occurred_at = k.occurred_at`;

// Every tenant of the batch, in the database's own order of text (the same for every writer), so
// that two transactions lock heads in one order and never deadlock. DO UPDATE locks an existing
// head as well as a new one; RETURNING hands back its seq and hash, unchanged.
const LOCK_HEADS = `INSERT INTO audit_chain_heads AS h (tenant)
  SELECT t FROM unnest($1::text[]) AS t ORDER BY 1
  ON CONFLICT (tenant) DO UPDATE SET updated_at = now()
  RETURNING h.tenant, h.seq::text, h.hash`;

/** Leaves of keys stored by a plain COPY in this transaction. */
export async function leavesOfKeys(client: pg.ClientBase, keys: { tenant: string; id: string; occurredAt: string }[]): Promise<ChainedRow[]> {
  const result = await client.query<[string, string, string, Buffer]>({
    text: LEAVES_OF_KEYS,
    values: [keys.map((k) => k.tenant), keys.map((k) => k.id), keys.map((k) => k.occurredAt)],
    rowMode: 'array',
  });
  if (result.rows.length !== keys.length) throw new Error(`audit chain: read back ${result.rows.length} of the ${keys.length} rows this transaction stored`);
  return result.rows;
}

/**
 * Append one link per tenant of `rows` (the events this transaction inserted) to that tenant's
 * chain, inside the caller's transaction: lock the heads, insert the links, move the heads. The
 * links commit or roll back with the events. Returns the new heads, to report once committed.
 */
export async function appendLinks(client: pg.ClientBase, rows: readonly ChainedRow[]): Promise<ChainHead[]> {
  if (rows.length === 0) return [];
  const byTenant = new Map<string, ChainedRow[]>();
  for (const row of rows) {
    const list = byTenant.get(row[0]);
    if (list) list.push(row);
    else byTenant.set(row[0], [row]);
  }
  const locked = await client.query<[string, string, Buffer]>({ text: LOCK_HEADS, values: [[...byTenant.keys()]], rowMode: 'array' });
  const values: unknown[] = [];
  const tuples: string[] = [];
  const heads: ChainHead[] = [];
  for (const [tenant, seqText, prevHash] of locked.rows) {
    // A canonical order within the link: by id, then occurred_at (the verifier reads the stored order).
    const events = byTenant.get(tenant)!.sort(byKey);
    const seq = BigInt(seqText) + 1n;
    const leaves = events.map((event) => event[3]);
    const root = digestOfLeaves(leaves);
    const hash = linkHash(prevHash, seq, root, events.length);
    const p = values.length;
    tuples.push(
      `($${p + 1}, $${p + 2}::bigint, $${p + 3}::bytea, $${p + 4}::bytea, $${p + 5}::integer, $${p + 6}::uuid[], $${p + 7}::timestamptz[], $${p + 8}::bytea[], $${p + 9}::bytea)`,
    );
    values.push(tenant, seq.toString(), prevHash, root, events.length, events.map((e) => e[1]), events.map((e) => e[2]), leaves, hash);
    heads.push({ tenant, seq, hash, events: events.length });
  }
  // One statement: the links, and the heads moved to them (rows locked above, so no order needed).
  await client.query(
    `WITH links AS (
       INSERT INTO audit_chain_links (tenant, seq, prev_hash, root, event_count, ids, occurred_ats, leaves, hash)
       VALUES ${tuples.join(', ')}
       RETURNING tenant, seq, hash
     )
     UPDATE audit_chain_heads h SET seq = l.seq, hash = l.hash, updated_at = now() FROM links l WHERE h.tenant = l.tenant`,
    values,
  );
  return heads;
}

function byKey(a: ChainedRow, b: ChainedRow): number {
  if (a[1] !== b[1]) return a[1] < b[1] ? -1 : 1;
  return a[2] < b[2] ? -1 : a[2] > b[2] ? 1 : 0;
}

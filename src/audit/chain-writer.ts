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
 * The keys of the events a transaction inserted, one per line: `id \t tenant \t occurred_at`, the
 * first three columns of a COPY row as they are (ids, tenants and validated times never hold a tab
 * or newline), so a plain COPY's batch gives them by slicing its rows.
 */
export type KeyLines = string;

/** The key part of an encoded COPY row: everything before its third tab. */
export function keyOfRow(row: string): string {
  const afterId = row.indexOf('\t') + 1;
  const afterTenant = row.indexOf('\t', afterId) + 1;
  return row.slice(0, row.indexOf('\t', afterTenant));
}

// The batch's tenants in the database's own order of text (the same for every writer), so that two
// transactions lock heads in one order and never deadlock. DO UPDATE locks an existing head as
// well as a new one; RETURNING hands back its seq and hash as they were.
const LOCK_HEADS = `INSERT INTO audit_chain_heads AS h (tenant)
  SELECT t FROM unnest($1::text[]) AS t ORDER BY 1
  ON CONFLICT (tenant) DO UPDATE SET updated_at = now()
  RETURNING h.tenant, h.seq, h.hash`;

// In one statement, for the keys $1 (KeyLines) and the locked heads ($2 tenants, $3 seqs, $4
// hashes): each stored row read back by key for its leaf, one primary-key probe each (LATERAL …
// LIMIT 1: a plain join let the planner hash the whole partition instead, a cost that grew with the
// table; one scan with tenant, id and occurred_at = ANY of the batch's was cheaper on a small table
// and 2× dearer on a grown one; reading the leaves from a second COPY of the batch into the
// staging table instead of probing cost the same — bench/audit-chain.ts, README);
// the rows grouped per tenant in the canonical order (id, occurred_at); one link per tenant with
//   root = sha256(leaf_1 || … || leaf_n), hash = sha256(prev_hash || int8(seq) || root || int8(n))
// (int8send: big-endian, as leaf-hash.ts's linkHash, which the verifier recomputes it with); the
// heads moved to the new links. Nothing of the rows goes through Node: only the keys come in.
const FROM_KEYS = `keys AS (
    SELECT split_part(line, E'\\t', 1)::uuid AS id, split_part(line, E'\\t', 2) AS tenant, split_part(line, E'\\t', 3)::timestamptz AS occurred_at
      FROM string_to_table($1::text, E'\\n') AS line
  ), stored AS (
    SELECT e.* FROM keys k CROSS JOIN LATERAL (
      SELECT tenant, id, occurred_at, ${leafSql('events')} AS leaf FROM events
       WHERE events.tenant = k.tenant AND events.id = k.id AND events.occurred_at = k.occurred_at LIMIT 1) AS e`;

const appendLinksSql = (source: string) => `WITH ${source}
  ), grouped AS (
    SELECT tenant, count(*)::integer AS n,
           array_agg(id ORDER BY id, occurred_at) AS ids,
           array_agg(occurred_at ORDER BY id, occurred_at) AS occurred_ats,
           array_agg(leaf ORDER BY id, occurred_at) AS leaves,
           sha256(string_agg(leaf, ''::bytea ORDER BY id, occurred_at)) AS root
      FROM stored GROUP BY tenant
  ), heads AS (
    SELECT tenant, seq + 1 AS seq, hash AS prev FROM unnest($2::text[], $3::bigint[], $4::bytea[]) AS h (tenant, seq, hash)
  ), links AS (
    INSERT INTO audit_chain_links (tenant, seq, prev_hash, root, event_count, ids, occurred_ats, leaves, hash)
    SELECT g.tenant, h.seq, h.prev, g.root, g.n, g.ids, g.occurred_ats, g.leaves, sha256(h.prev || int8send(h.seq) || g.root || int8send(g.n::bigint))
      FROM grouped g JOIN heads h ON h.tenant = g.tenant
    RETURNING tenant, seq, hash, event_count
  )
  UPDATE audit_chain_heads h SET seq = l.seq, hash = l.hash, updated_at = now()
    FROM links l WHERE h.tenant = l.tenant
  RETURNING h.tenant, h.seq::text, h.hash, l.event_count`;
const APPEND_LINKS = appendLinksSql(FROM_KEYS);

/**
 * Append one link per tenant of `tenants` to its chain, for the events this transaction inserted
 * (`keys`, `count` of them), inside the caller's transaction: lock the heads, insert the links,
 * move the heads. The links commit or roll back with the events. Returns the new heads, to report
 * once committed.
 */
export async function appendLinks(client: pg.ClientBase, tenants: readonly string[], keys: KeyLines, count: number): Promise<ChainHead[]> {
  if (count === 0) return [];
  const locked = await client.query<[string, string, Buffer]>({ text: LOCK_HEADS, values: [tenants], rowMode: 'array' });
  const moved = await client.query<[string, string, Buffer, number]>({
    text: APPEND_LINKS,
    values: [keys, locked.rows.map((row) => row[0]), locked.rows.map((row) => row[1]), locked.rows.map((row) => row[2])],
    rowMode: 'array',
  });
  const heads = moved.rows.map(([tenant, seq, hash, events]) => ({ tenant, seq: BigInt(seq), hash, events }));
  const chained = heads.reduce((sum, head) => sum + head.events, 0);
  if (chained !== count) throw new AuditChainMismatchError(`audit chain: ${chained} of the ${count} events this transaction inserted were found to chain`);
  return heads;
}

/** The distinct tenants of a batch. */
export function tenantsOf(events: readonly { readonly tenant: string }[]): string[] {
  return [...new Set(events.map((event) => event.tenant))];
}

import { createHash } from 'node:crypto';
import { EVENT_COLUMNS } from '../event/copy-row.ts';

/** A hash of the chain: SHA-256, 32 bytes. */
export const HASH_BYTES = 32;
/** The `prev_hash` of a tenant's first link (and the hash of its head before any link). */
export const GENESIS_HASH: Buffer = Buffer.alloc(HASH_BYTES);

/**
 * The SQL expression of one stored event's leaf hash (migration 0007's audit_event_leaf over the
 * row's columns), for the rows of `alias`. Writer and verifier both use it, so both hash the one
 * canonical text PostgreSQL builds from the stored values: never a client's original text.
 */
export function leafSql(alias: string): string {
  return `audit_event_leaf(${EVENT_COLUMNS.map((column) => `${alias}.${column}`).join(', ')})`;
}

/** The digest of one link's events: sha256(leaf_1 || … || leaf_n), in the link's order. */
export function digestOfLeaves(leaves: readonly Buffer[]): Buffer {
  const hash = createHash('sha256');
  for (const leaf of leaves) hash.update(leaf);
  return hash.digest();
}

function int8(value: bigint): Buffer {
  const buffer = Buffer.alloc(8);
  buffer.writeBigInt64BE(value);
  return buffer;
}

/** A link's hash: sha256(prev_hash || int8(seq) || root || int8(event_count)), integers big-endian. */
export function linkHash(prevHash: Buffer, seq: bigint, root: Buffer, eventCount: number): Buffer {
  return createHash('sha256').update(prevHash).update(int8(seq)).update(root).update(int8(BigInt(eventCount))).digest();
}

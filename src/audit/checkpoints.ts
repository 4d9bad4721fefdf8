import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { TrustedCheckpoint } from './verify.ts';

/**
 * Signed checkpoints: (tenant, seq, head hash, time) signed with Ed25519, one JSON object per
 * line of an append-only file kept where the database's operator cannot rewrite it. A checkpoint
 * pins the chain up to its seq: links deleted from the end, or the chain rewritten up to there,
 * no longer match it (verify.ts).
 */

/** One line of the checkpoint file. */
export interface CheckpointLine {
  readonly v: 1;
  readonly tenant: string;
  /** Decimal: a seq may exceed 2^53. */
  readonly seq: string;
  /** The head's hash after link `seq`, hex. */
  readonly hash: string;
  /** When it was signed, ISO 8601 UTC. */
  readonly time: string;
  /** The signing key's id (keyIdOf): which public key checks it. */
  readonly key: string;
  /** Ed25519 signature of checkpointMessage, base64. */
  readonly sig: string;
}

export interface KeyPairPem {
  readonly privateKeyPem: string;
  readonly publicKeyPem: string;
}

export function generateSigningKeyPair(): KeyPairPem {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return {
    privateKeyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
  };
}

/** A short, stable id of a public key: the first 16 hex digits of SHA-256 of its DER (SPKI). */
export function keyIdOf(key: KeyObject): string {
  const publicKey = key.type === 'private' ? createPublicKey(key) : key;
  return createHash('sha256').update(publicKey.export({ type: 'spki', format: 'der' })).digest('hex').slice(0, 16);
}

function requireEd25519(key: KeyObject, what: string): KeyObject {
  if (key.asymmetricKeyType !== 'ed25519') throw new Error(`${what} is a ${key.asymmetricKeyType ?? key.type} key, not Ed25519 (make one with \`npm run audit -- keygen\`)`);
  return key;
}

/** The private key from AUDIT_SIGNING_KEY_FILE (a PEM file) or AUDIT_SIGNING_KEY (the PEM itself). */
export async function loadSigningKey(source: { readonly file: string } | { readonly pem: string }): Promise<KeyObject> {
  const pem = 'file' in source ? await readFile(source.file, 'utf8') : source.pem;
  return requireEd25519(createPrivateKey(pem), 'file' in source ? `AUDIT_SIGNING_KEY_FILE ${source.file}` : 'AUDIT_SIGNING_KEY');
}

export function loadPublicKey(pem: string, what: string): KeyObject {
  return requireEd25519(createPublicKey(pem), what);
}

/** What is signed: a versioned text no two checkpoints share (tenants hold no newline). */
export function checkpointMessage(tenant: string, seq: string, hashHex: string, time: string): Buffer {
  return Buffer.from(`audit-checkpoint-v1\n${tenant}\n${seq}\n${hashHex}\n${time}`, 'utf8');
}

export function signCheckpoint(key: KeyObject, keyId: string, head: { tenant: string; seq: bigint; hash: Buffer }, time: string): CheckpointLine {
  const seq = head.seq.toString();
  const hash = head.hash.toString('hex');
  const sig = sign(null, checkpointMessage(head.tenant, seq, hash, time), key).toString('base64');
  return { v: 1, tenant: head.tenant, seq, hash, time, key: keyId, sig };
}

/** A line that is not a checkpoint signed by the given key: a forged, altered or foreign line. */
export interface BadCheckpoint {
  /** 1-based line of the file. */
  readonly line: number;
  readonly file: string;
  readonly reason: string;
}

const HEX_HASH = /^[0-9a-f]{64}$/;
const DECIMAL = /^[1-9][0-9]{0,18}$/;

/**
 * The checkpoints of `tenant` in a checkpoint file's text, each signature checked with `publicKey`.
 * Lines of other tenants are skipped unread; an empty last line (the file ends with a newline) is fine.
 */
export function readCheckpoints(text: string, file: string, publicKey: KeyObject, tenant: string): { trusted: TrustedCheckpoint[]; bad: BadCheckpoint[] } {
  const keyId = keyIdOf(publicKey);
  const trusted: TrustedCheckpoint[] = [];
  const bad: BadCheckpoint[] = [];
  const lines = text.split('\n');
  if (lines.at(-1) === '') lines.pop();
  lines.forEach((raw, index) => {
    const line = index + 1;
    let parsed: Partial<Record<keyof CheckpointLine, unknown>>;
    try {
      parsed = JSON.parse(raw) as typeof parsed;
    } catch {
      bad.push({ line, file, reason: 'not a JSON object' });
      return;
    }
    if (parsed === null || typeof parsed !== 'object') return void bad.push({ line, file, reason: 'not a JSON object' });
    if (parsed.tenant !== tenant) return;
    const { seq, hash, time, key, sig, v } = parsed;
    if (v !== 1 || typeof seq !== 'string' || !DECIMAL.test(seq) || typeof hash !== 'string' || !HEX_HASH.test(hash) || typeof time !== 'string' || typeof sig !== 'string') {
      return void bad.push({ line, file, reason: 'not a checkpoint (v, seq, hash, time or sig missing or malformed)' });
    }
    if (key !== keyId) return void bad.push({ line, file, reason: `signed by key ${String(key)}, not by the given public key (${keyId})` });
    if (!verify(null, checkpointMessage(tenant, seq, hash, time), publicKey, Buffer.from(sig, 'base64'))) {
      return void bad.push({ line, file, reason: 'bad signature: the checkpoint was forged or altered' });
    }
    trusted.push({ tenant, seq: BigInt(seq), hash: Buffer.from(hash, 'hex'), time });
  });
  return { trusted, bad };
}

import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

/**
 * An API key reads `aik_<id>_<secret>`: the id (16 hex) finds the row, the secret (32 random bytes,
 * base64url) proves possession. Only SHA-256(secret) is stored.
 */
const KEY_PATTERN = /^aik_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$/;

export interface ParsedKey {
  readonly id: string;
  readonly secret: string;
}

export function generateKey(): { key: string; id: string; secretHash: Buffer } {
  const id = randomBytes(8).toString('hex');
  const secret = randomBytes(32).toString('base64url');
  return { key: `aik_${id}_${secret}`, id, secretHash: hashSecret(secret) };
}

export function parseKey(key: string): ParsedKey | undefined {
  const match = KEY_PATTERN.exec(key);
  return match ? { id: match[1]!, secret: match[2]! } : undefined;
}

export function hashSecret(secret: string): Buffer {
  return createHash('sha256').update(secret).digest();
}

export function secretMatches(secret: string, storedHash: Buffer): boolean {
  const candidate = hashSecret(secret);
  return candidate.length === storedHash.length && timingSafeEqual(candidate, storedHash);
}

/** The bearer token of an Authorization header, or undefined. */
export function bearerToken(header: string | undefined): string | undefined {
  if (!header) return undefined;
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
  return match?.[1];
}

import type pg from 'pg';
import { onCheckedOutClientError, withTimeoutCode } from '../db/pool.ts';
import { generateKey } from './api-key.ts';

export interface StoredKey {
  readonly id: string;
  readonly tenant: string;
  readonly secretHash: Buffer;
  readonly label: string | null;
  readonly createdAt: Date;
  readonly expiresAt: Date | null;
  readonly revokedAt: Date | null;
}

interface KeyRow {
  id: string;
  tenant: string;
  secret_hash: Buffer;
  label: string | null;
  created_at: Date;
  expires_at: Date | null;
  revoked_at: Date | null;
}

const toStoredKey = (row: KeyRow): StoredKey => ({
  id: row.id,
  tenant: row.tenant,
  secretHash: row.secret_hash,
  label: row.label,
  createdAt: row.created_at,
  expiresAt: row.expires_at,
  revokedAt: row.revoked_at,
});

const COLUMNS = 'id, tenant, secret_hash, label, created_at, expires_at, revoked_at';

/** The api_keys table. */
export class ApiKeyStore {
  readonly #pool: pg.Pool;
  readonly #lookupTimeoutMs: number;

  /**
   * `lookupTimeoutMs` bounds `find` once it has a connection (the pool's connect timeout bounds the
   * wait for one): a lookup on a connection the database no longer answers fails, and that
   * connection is discarded, instead of holding a pool slot until TCP gives up.
   */
  constructor(pool: pg.Pool, options: { lookupTimeoutMs?: number } = {}) {
    this.#pool = pool;
    this.#lookupTimeoutMs = options.lookupTimeoutMs ?? 5_000;
  }

  /** Create a key for `tenant`; the plain key is returned once and never stored. */
  async create(tenant: string, label?: string): Promise<{ key: string; stored: StoredKey }> {
    const { key, id, secretHash } = generateKey();
    const { rows } = await this.#pool.query<KeyRow>(
      `INSERT INTO api_keys (id, tenant, secret_hash, label) VALUES ($1, $2, $3, $4) RETURNING ${COLUMNS}`,
      [id, tenant, secretHash, label ?? null],
    );
    return { key, stored: toStoredKey(rows[0]!) };
  }

  async find(id: string): Promise<StoredKey | undefined> {
    // pg reads query_timeout from a query's config; its type definitions do not list it.
    const query: pg.QueryConfig & { query_timeout: number } = {
      text: `SELECT ${COLUMNS} FROM api_keys WHERE id = $1`,
      values: [id],
      query_timeout: this.#lookupTimeoutMs,
    };
    const { rows } = await this.#pool.query<KeyRow>(query).catch((error: unknown) => {
      throw withTimeoutCode(error);
    });
    return rows[0] ? toStoredKey(rows[0]) : undefined;
  }

  async list(tenant?: string): Promise<StoredKey[]> {
    const { rows } = tenant
      ? await this.#pool.query<KeyRow>(`SELECT ${COLUMNS} FROM api_keys WHERE tenant = $1 ORDER BY created_at`, [tenant])
      : await this.#pool.query<KeyRow>(`SELECT ${COLUMNS} FROM api_keys ORDER BY tenant, created_at`);
    return rows.map(toStoredKey);
  }

  /** Revoke now. False when there is no such key or it was already revoked. */
  async revoke(id: string): Promise<boolean> {
    const result = await this.#pool.query('UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL', [id]);
    return result.rowCount === 1;
  }

  /**
   * Rotate: a new key for the same tenant, and the old one expires after `overlapMs` so clients
   * can switch without a gap. One transaction.
   */
  async rotate(id: string, overlapMs: number): Promise<{ key: string; stored: StoredKey } | undefined> {
    const client = await this.#pool.connect();
    // A connection that dies mid-transaction fails the query in flight; the listener keeps its
    // 'error' from being uncaught, and the dead client is discarded rather than pooled again.
    let broken: Error | undefined;
    const stopListening = onCheckedOutClientError(client, (error) => {
      broken ??= error;
    });
    try {
      await client.query('BEGIN');
      const { rows } = await client.query<{ tenant: string; label: string | null }>(
        `UPDATE api_keys SET expires_at = LEAST(COALESCE(expires_at, 'infinity'), now() + make_interval(secs => $2::double precision / 1000))
         WHERE id = $1 AND revoked_at IS NULL RETURNING tenant, label`,
        [id, overlapMs],
      );
      const old = rows[0];
      if (!old) {
        await client.query('ROLLBACK');
        return undefined;
      }
      const { key, id: newId, secretHash } = generateKey();
      const inserted = await client.query<KeyRow>(
        `INSERT INTO api_keys (id, tenant, secret_hash, label) VALUES ($1, $2, $3, $4) RETURNING ${COLUMNS}`,
        [newId, old.tenant, secretHash, old.label],
      );
      await client.query('COMMIT');
      return { key, stored: toStoredKey(inserted.rows[0]!) };
    } catch (error) {
      if (broken === undefined) await client.query('ROLLBACK').catch(() => {});
      throw error;
    } finally {
      stopListening();
      client.release(broken);
    }
  }
}

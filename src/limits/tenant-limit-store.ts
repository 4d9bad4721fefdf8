import type pg from 'pg';
import type { TenantLimitOverride } from './tenant-rate-limiter.ts';

interface Row {
  tenant: string;
  rate: number | null;
  burst: number | null;
  byte_rate: string | null;
  byte_burst: string | null;
}

const toNumber = (value: string | number | null) => (value === null ? null : Number(value));

/** The tenant_limits table (migration 0006): per-tenant overrides of TENANT_* limits. */
export class TenantLimitStore {
  readonly #pool: pg.Pool;

  constructor(pool: pg.Pool) {
    this.#pool = pool;
  }

  async list(): Promise<TenantLimitOverride[]> {
    const { rows } = await this.#pool.query<Row>('SELECT tenant, rate, burst, byte_rate, byte_burst FROM tenant_limits ORDER BY tenant');
    return rows.map((row) => ({ tenant: row.tenant, rate: toNumber(row.rate), burst: toNumber(row.burst), byteRate: toNumber(row.byte_rate), byteBurst: toNumber(row.byte_burst) }));
  }

  async set(override: TenantLimitOverride): Promise<void> {
    await this.#pool.query(
      `INSERT INTO tenant_limits (tenant, rate, burst, byte_rate, byte_burst) VALUES ($1, $2, $3, $4, $5)
       ON CONFLICT (tenant) DO UPDATE SET rate = $2, burst = $3, byte_rate = $4, byte_burst = $5, updated_at = now()`,
      [override.tenant, override.rate, override.burst, override.byteRate, override.byteBurst],
    );
  }

  /** False when the tenant had no override. */
  async clear(tenant: string): Promise<boolean> {
    const result = await this.#pool.query('DELETE FROM tenant_limits WHERE tenant = $1', [tenant]);
    return result.rowCount === 1;
  }
}

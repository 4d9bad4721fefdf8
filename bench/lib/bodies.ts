/**
 * Variants of the benchmark's request bodies: the same events as lib/event-body.ts, with the tenant
 * spread over N tenants (or fixed), and a share of "poison" events the database will refuse once
 * poison-lag.ts has added its CHECK constraint. Deterministic, like makeBodies.
 */
import { makeEvent } from './event-body.ts';

/** The action poison-lag.ts's CHECK constraint refuses (a stand-in for a schema bug). */
export const POISON_ACTION = 'legacy.poison';

export interface BodyVariant {
  /** Spread the events round robin over this many tenants, `${tenantPrefix}${i % tenants}`. */
  readonly tenants?: number;
  /** Default 'tenant-'. */
  readonly tenantPrefix?: string;
  /** Every event in this one tenant (overrides `tenants`). */
  readonly tenant?: string;
  /** Body i is poison when (i + 1) % poisonEvery === 0: exactly 1 in poisonEvery, evenly spaced. */
  readonly poisonEvery?: number;
}

const gcd = (a: number, b: number): number => (b === 0 ? a : gcd(b, a % b));

/**
 * At least `minimum` bodies, and a whole number of tenant and poison cycles, so cycling through
 * the list keeps the spread exact.
 */
export function makeVariantBodies(minimum: number, variant: BodyVariant): string[] {
  const tenants = variant.tenant === undefined ? Math.max(1, variant.tenants ?? 1) : 1;
  const poisonEvery = Math.max(1, variant.poisonEvery ?? 1);
  const cycle = (tenants * poisonEvery) / gcd(tenants, poisonEvery);
  const count = Math.max(1, Math.ceil(minimum / cycle)) * cycle;
  const prefix = variant.tenantPrefix ?? 'tenant-';
  return Array.from({ length: count }, (_, i) => {
    const event = makeEvent(i);
    if (variant.tenant !== undefined) event.tenant = variant.tenant;
    else if (variant.tenants !== undefined) event.tenant = `${prefix}${i % tenants}`;
    if (variant.poisonEvery !== undefined && (i + 1) % poisonEvery === 0) event.action = POISON_ACTION;
    return JSON.stringify(event);
  });
}

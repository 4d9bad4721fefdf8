/**
 * `npm run keys -- <command>`: manage per-tenant API keys. The database is found as the service
 * finds it (DATABASE_URL, else the embedded server under DATA_DIR).
 *
 *   create --tenant <t> [--label <text>]   prints the new key alone on the last line of stdout
 *   list [--tenant <t>]                    one line per key: id, tenant, state, created, expires, label
 *   revoke <key-id>                        the key stops working within AUTH_CACHE_TTL_MS
 *   rotate <key-id> [--overlap-hours N]    a new key for the same tenant; the old one keeps working
 *                                          for N hours (default 24), then expires
 *   limit --tenant <t> [--rate N] [--burst N] [--byte-rate N] [--byte-burst N] | --clear
 *                                          set (or clear) the tenant's rate-limit override; running
 *                                          services pick it up within TENANT_LIMITS_POLL_MS
 *   limits                                 one line per override: tenant, rate, burst, byte rate, byte burst
 *
 * Exit codes: 0 ok, 1 no such key, 2 usage or configuration error.
 */
import { parseArgs } from 'node:util';
import pg from 'pg';
import { pino } from 'pino';
import { ApiKeyStore, type StoredKey } from '../src/auth/api-key-store.ts';
import { ConfigError, loadConfig, type Config } from '../src/config.ts';
import { openCliDatabase } from '../src/db/cli-database.ts';
import { TenantLimitStore } from '../src/limits/tenant-limit-store.ts';

const TENANT = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const USAGE = `usage: npm run keys -- <command> [options]

  create --tenant <t> [--label <text>]   a new key; printed alone on the last line of stdout, shown once
  list [--tenant <t>]                    one line per key: id, tenant, state, created, expires, label
  revoke <key-id>                        the key stops working within AUTH_CACHE_TTL_MS
  rotate <key-id> [--overlap-hours N]    a new key for the same tenant; the old one keeps working for
                                         N hours (default 24), then expires
  limit --tenant <t> [--rate N] [--burst N] [--byte-rate N] [--byte-burst N]
                                         override the tenant's rate limits (events/s, events at once,
                                         bytes/s, bytes at once; an option left out falls back to
                                         TENANT_*); picked up within TENANT_LIMITS_POLL_MS (5 s)
  limit --tenant <t> --clear             drop the override: the TENANT_* defaults apply again
  limits                                 one line per override: tenant, rate, burst, byte rate, byte burst

Finds the database as the service does: DATABASE_URL, else the embedded PostgreSQL under DATA_DIR
(default ./.data). Exit codes: 0 ok, 1 no such key, 2 usage or configuration error.`;
const out = (line: string) => process.stdout.write(`${line}\n`);
const fail = (line: string, code: number): never => {
  process.stderr.write(`${line}\n`);
  process.exit(code);
};
const usageError = (line: string): never => fail(`${line}\n\n${USAGE}`, 2);
/** A --rate/--burst/--byte-* value: a positive integer, or null when left out. */
function positiveOption(name: string, value: string | undefined, max: number): number | null {
  if (value === undefined) return null;
  const parsed = Number(value);
  if (!Number.isSafeInteger(parsed) || parsed < 1 || parsed > max) return fail(`--${name} must be an integer from 1 to ${max}`, 2);
  return parsed;
}

function describe(key: StoredKey, nowMs: number): string {
  const state = key.revokedAt
    ? 'revoked'
    : key.expiresAt && key.expiresAt.getTime() <= nowMs
      ? 'expired'
      : key.expiresAt
        ? 'expiring'
        : 'active';
  return [key.id, key.tenant, state, key.createdAt.toISOString(), key.expiresAt?.toISOString() ?? '-', key.label ?? ''].join('\t');
}

function parseCommandLine() {
  try {
    return parseArgs({
      allowPositionals: true,
      options: {
        tenant: { type: 'string' },
        label: { type: 'string' },
        'overlap-hours': { type: 'string' },
        rate: { type: 'string' },
        burst: { type: 'string' },
        'byte-rate': { type: 'string' },
        'byte-burst': { type: 'string' },
        clear: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
    });
  } catch (error) {
    // ERR_PARSE_ARGS_UNKNOWN_OPTION and friends: a usage error, not a crash.
    return usageError((error as Error).message);
  }
}
const { positionals, values } = parseCommandLine();
if (values.help) {
  out(USAGE);
  process.exit(0);
}
const [command, argument, ...extra] = positionals;
if (!command) usageError('no command given');
if (!['create', 'list', 'revoke', 'rotate', 'limit', 'limits'].includes(command!)) usageError(`unknown command "${command!}"`);
if (extra.length > 0) usageError(`unexpected arguments: ${extra.join(' ')}`);

function readConfig(): Config {
  try {
    return loadConfig(process.env);
  } catch (error) {
    return fail(error instanceof ConfigError ? error.message : String(error), 2);
  }
}
const config = readConfig();
const logger = pino({ level: 'warn' }, pino.destination(2));
/** What an operator needs of an unexpected error: its message and code, not a stack. */
const describeError = (error: unknown) =>
  error instanceof Error ? `${error.message}${'code' in error && typeof error.code === 'string' ? ` (${error.code})` : ''}` : String(error);
const database = await openCliDatabase(config, logger).catch((error: unknown) =>
  fail(`keys: cannot open the database (DATABASE_URL, else the embedded one under DATA_DIR): ${describeError(error)}`, 1),
);
const pool = new pg.Pool({ connectionString: database.url, max: 1 });
const store = new ApiKeyStore(pool);
const limitStore = new TenantLimitStore(pool);
let exitCode = 0;
try {
  switch (command) {
    case 'create': {
      const tenant = values.tenant ?? fail('create needs --tenant <tenant>', 2);
      if (!TENANT.test(tenant)) fail(`--tenant must be 1-64 characters of [A-Za-z0-9._-], starting with a letter or digit`, 2);
      const { key, stored } = await store.create(tenant, values.label);
      out(`created key ${stored.id} for tenant ${stored.tenant}; it is shown once, store it now:`);
      out(key);
      break;
    }
    case 'list': {
      const nowMs = Date.now();
      out(['id', 'tenant', 'state', 'created', 'expires', 'label'].join('\t'));
      for (const key of await store.list(values.tenant)) out(describe(key, nowMs));
      break;
    }
    case 'revoke': {
      if (!argument) fail('revoke needs a key id (see `list`)', 2);
      if (await store.revoke(argument!)) out(`revoked ${argument}; it stops working within AUTH_CACHE_TTL_MS (30 s by default)`);
      else {
        process.stderr.write(`no active key ${argument}\n`);
        exitCode = 1;
      }
      break;
    }
    case 'rotate': {
      if (!argument) fail('rotate needs a key id (see `list`)', 2);
      const hours = Number(values['overlap-hours'] ?? '24');
      if (!(hours >= 0)) fail('--overlap-hours must be a non-negative number', 2);
      const rotated = await store.rotate(argument!, hours * 3_600_000);
      if (!rotated) {
        process.stderr.write(`no active key ${argument}\n`);
        exitCode = 1;
        break;
      }
      out(`rotated ${argument}: it keeps working for ${hours} h; new key ${rotated.stored.id} for tenant ${rotated.stored.tenant}:`);
      out(rotated.key);
      break;
    }
    case 'limit': {
      const tenant = values.tenant ?? fail('limit needs --tenant <tenant>', 2);
      if (!TENANT.test(tenant)) fail(`--tenant must be 1-64 characters of [A-Za-z0-9._-], starting with a letter or digit`, 2);
      const override = {
        tenant,
        rate: positiveOption('rate', values.rate, 2_147_483_647),
        burst: positiveOption('burst', values.burst, 2_147_483_647),
        byteRate: positiveOption('byte-rate', values['byte-rate'], Number.MAX_SAFE_INTEGER),
        byteBurst: positiveOption('byte-burst', values['byte-burst'], Number.MAX_SAFE_INTEGER),
      };
      const given = [override.rate, override.burst, override.byteRate, override.byteBurst].some((value) => value !== null);
      if (values.clear) {
        if (given) fail('limit --clear takes no --rate, --burst, --byte-rate or --byte-burst', 2);
        if (await limitStore.clear(tenant)) out(`cleared the override of tenant ${tenant}; the TENANT_* defaults apply within TENANT_LIMITS_POLL_MS`);
        else {
          process.stderr.write(`tenant ${tenant} has no override\n`);
          exitCode = 1;
        }
        break;
      }
      if (!given) fail('limit needs at least one of --rate, --burst, --byte-rate, --byte-burst (or --clear)', 2);
      await limitStore.set(override);
      const show = (value: number | null) => (value === null ? 'default' : String(value));
      out(`tenant ${tenant}: rate ${show(override.rate)}/s, burst ${show(override.burst)}, byte rate ${show(override.byteRate)}/s, byte burst ${show(override.byteBurst)}; running services pick it up within TENANT_LIMITS_POLL_MS`);
      break;
    }
    case 'limits': {
      out(['tenant', 'rate', 'burst', 'byte_rate', 'byte_burst'].join('\t'));
      const show = (value: number | null) => (value === null ? '-' : String(value));
      for (const row of await limitStore.list()) out([row.tenant, show(row.rate), show(row.burst), show(row.byteRate), show(row.byteBurst)].join('\t'));
      break;
    }
  }
} catch (error) {
  process.stderr.write(`keys: ${command!} failed: ${describeError(error)}\n`);
  exitCode = 1;
} finally {
  await pool.end();
  await database.close();
}
process.exit(exitCode);

/**
 * `npm run audit -- <command>`: the tamper evidence of AUDIT_CHAIN=on (README "Tamper evidence").
 *
 *   keygen --out <dir>       an Ed25519 key pair for signed checkpoints: <dir>/audit-signing.pem
 *                            (private, mode 0600: AUDIT_SIGNING_KEY_FILE) and <dir>/audit-signing.pub.pem
 *   verify --tenant <t> [--since <time>] [--checkpoints <file>]... [--public-key <pem file>]
 *          [--unchained-before <time>] [--no-unchained-check]
 *                            check the tenant's chain against the stored events; exit 0 intact,
 *                            1 not (the first bad position named), 2 usage
 */
import { readFile, writeFile, mkdir } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { pino } from 'pino';
import { generateSigningKeyPair, keyIdOf, loadPublicKey, readCheckpoints } from '../src/audit/checkpoints.ts';
import { verifyChain, type TrustedCheckpoint } from '../src/audit/verify.ts';
import { loadConfig } from '../src/config.ts';
import { openCliDatabase } from '../src/db/cli-database.ts';
import { err, out, runCli, UsageError } from './lib/cli.ts';

const USAGE = `usage: npm run audit -- <command> [options]

  keygen --out <dir>          make an Ed25519 key pair for signed checkpoints:
                              <dir>/audit-signing.pem      the private key (mode 0600): AUDIT_SIGNING_KEY_FILE
                              <dir>/audit-signing.pub.pem  the public key: give it to whoever verifies
  verify --tenant <t>         check the tenant's hash chain against the stored events
         [--since <time>]     only events that occurred at or after <time> (ISO 8601) are looked up
                              (use a time past RETENTION_DAYS); the links are always walked whole
         [--checkpoints <file>]...  signed checkpoint files (AUDIT_CHECKPOINT_FILE of each replica, or
                                    the lines an AUDIT_CHECKPOINT_WEBHOOK_URL receiver stored)
         [--public-key <file>]      the public key (PEM) that checks them; needed with --checkpoints
         [--unchained-before <time>]  rows received before <time> (the chain was turned on then) may be in no link
         [--no-unchained-check]     do not look for rows in no link (a region that also holds rows
                                    applied from another region: those are in the other region's chain)
         [--json]             the report as one JSON object

Finds the database as the service does: DATABASE_URL, else the embedded PostgreSQL under DATA_DIR.
Exit codes: 0 intact (or keys made), 1 tampering found (the first bad position is named) or a
database error, 2 usage or configuration error.`;

const TENANT = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** A file named on the command line; one that cannot be read is a usage error. */
async function readNamed(option: string, file: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (error) {
    throw new UsageError(`--${option} ${file}: ${(error as Error).message}`);
  }
}

function parseTime(name: string, value: string | undefined): Date | undefined {
  if (value === undefined) return undefined;
  const time = new Date(value);
  if (!/^\d{4}-\d{2}-\d{2}/.test(value) || Number.isNaN(time.getTime())) throw new UsageError(`--${name} must be an ISO 8601 time, e.g. 2026-12-01T00:00:00Z, not "${value}"`);
  return time;
}

async function keygen(directory: string | undefined): Promise<number> {
  if (directory === undefined) throw new UsageError('keygen needs --out <dir>');
  await mkdir(directory, { recursive: true });
  const { privateKeyPem, publicKeyPem } = generateSigningKeyPair();
  const privateFile = path.join(directory, 'audit-signing.pem');
  const publicFile = path.join(directory, 'audit-signing.pub.pem');
  // 'wx': never overwrite a key checkpoints were signed with.
  await writeFile(privateFile, privateKeyPem, { mode: 0o600, flag: 'wx' });
  await writeFile(publicFile, publicKeyPem, { mode: 0o644, flag: 'wx' });
  out(`wrote ${privateFile} (private: AUDIT_SIGNING_KEY_FILE, keep it away from the database's operators)`);
  out(`wrote ${publicFile} (public, key id ${keyIdOf(loadPublicKey(publicKeyPem, publicFile))}: for npm run audit -- verify --public-key)`);
  return 0;
}

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      tenant: { type: 'string' },
      since: { type: 'string' },
      checkpoints: { type: 'string', multiple: true },
      'public-key': { type: 'string' },
      'unchained-before': { type: 'string' },
      'no-unchained-check': { type: 'boolean', default: false },
      out: { type: 'string' },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    out(USAGE);
    return 0;
  }
  const [command, ...extra] = positionals;
  if (command === undefined) throw new UsageError('no command given');
  if (extra.length > 0) throw new UsageError(`unexpected arguments: ${extra.join(' ')}`);
  if (command === 'keygen') return keygen(values.out);
  if (command !== 'verify') throw new UsageError(`unknown command "${command}"`);

  const tenant = values.tenant;
  if (tenant === undefined) throw new UsageError('verify needs --tenant <tenant>');
  if (!TENANT.test(tenant)) throw new UsageError('--tenant must be 1-64 characters of [A-Za-z0-9._-], starting with a letter or digit');
  const since = parseTime('since', values.since);
  const unchainedBefore = parseTime('unchained-before', values['unchained-before']);
  const files = values.checkpoints ?? [];
  if (files.length > 0 && values['public-key'] === undefined) throw new UsageError('--checkpoints needs --public-key <pem file> to check their signatures');
  if (files.length === 0 && values['public-key'] !== undefined) throw new UsageError('--public-key is for --checkpoints <file>');

  const checkpoints: TrustedCheckpoint[] = [];
  if (files.length > 0) {
    const keyFile = values['public-key']!;
    const publicKey = loadPublicKey(await readNamed('public-key', keyFile), keyFile);
    for (const file of files) {
      const { trusted, bad } = readCheckpoints(await readNamed('checkpoints', file), file, publicKey, tenant);
      const first = bad[0];
      if (first) {
        report(values.json, { ok: false, tenant, finding: { kind: 'checkpoint-forged', file: first.file, line: first.line, message: first.reason } }, `NOT INTACT: ${first.file} line ${first.line}: ${first.reason}`);
        return 1;
      }
      checkpoints.push(...trusted);
    }
  }

  const config = loadConfig(process.env);
  const logger = pino({ level: 'warn' }, pino.destination(2));
  const database = await openCliDatabase(config, logger);
  const pool = new pg.Pool({ connectionString: database.url, max: 1 });
  try {
    const result = await verifyChain(pool, { tenant, since, checkpoints, checkUnchained: !values['no-unchained-check'], unchainedBefore });
    const headRecoveries = result.headRecoveries.map((r) => ({ found: r.found, foundSeq: r.foundSeq?.toString() ?? null, lastSeq: r.lastSeq.toString(), recoveredAt: r.recoveredAt }));
    const summary = { tenant, links: result.links, events: result.events, lastSeq: result.lastSeq.toString(), checkpoints: result.checkpointsChecked, headRecoveries };
    // Not a finding: the service re-derived a head someone deleted or moved back; the links were checked above.
    const notes = result.headRecoveries.map(
      (r) =>
        `note: at ${r.recoveredAt} the service found the head of tenant ${tenant} ${r.found === 'missing' ? 'deleted' : `moved back to seq ${r.foundSeq}`} and re-derived it from link ${r.lastSeq}: someone changed audit_chain_heads (runbook "Audit chain head recovered or out of step")`,
    );
    if (result.finding) {
      const { kind, seq, key, message } = result.finding;
      const at = [seq === undefined ? undefined : `link ${seq}`, key === undefined ? undefined : `event (${tenant}, ${key.id}, ${key.occurredAt})`].filter(Boolean).join(', ');
      report(values.json, { ok: false, ...summary, finding: { kind, seq: seq?.toString(), key, message } }, [`NOT INTACT at ${at}: ${kind}: ${message}`, ...notes].join('\n'));
      return 1;
    }
    report(
      values.json,
      { ok: true, ...summary },
      [
        `intact: tenant ${tenant}, ${result.links} links, ${result.events} events${since ? ` (rows looked up from ${since.toISOString()})` : ''}, up to link ${result.lastSeq}; ${result.checkpointsChecked} signed checkpoints match`,
        ...notes,
      ].join('\n'),
    );
    return 0;
  } finally {
    await pool.end();
    await database.close();
  }
}

function report(json: boolean, object: Record<string, unknown>, line: string): void {
  if (json) out(JSON.stringify(object));
  else if (object.ok === true) out(line);
  else err(line);
}

await runCli(() => main(process.argv.slice(2)), USAGE, (error) => {
  const code = (error as { code?: unknown }).code;
  return `audit: ${error instanceof Error ? error.message : String(error)}${typeof code === 'string' ? ` (${code})` : ''}`;
});

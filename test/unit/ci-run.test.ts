/**
 * .ci/run installs what skipped tests need (promtool, from Debian's prometheus package) when it
 * can, and then requires it, so the alert-rule tests run in CI instead of skipping.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const script = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../.ci/run');

describe('.ci/run', () => {
  it('is valid bash', () => {
    const result = spawnSync('bash', ['-n', script], { encoding: 'utf8' });
    assert.equal(result.status, 0, result.stderr);
  });

  it('as root, apt-get installs prometheus (promtool) when missing, tolerates apt failing, then requires promtool', async () => {
    const text = await readFile(script, 'utf8');
    assert.match(text, /id -u\)" != 0/, 'only as root');
    assert.match(text, /apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y [^\n]*\bprometheus\b/);
    assert.match(text, /if ! \{ apt-get update/, 'an apt failure does not stop CI (set -e)');
    assert.match(text, /export INGEST_REQUIRE_PROMTOOL=1/);
    assert.ok(text.indexOf('install_debian_packages\n') < text.indexOf('npm test'), 'installed before the tests run');
  });
});

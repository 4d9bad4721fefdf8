import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigError, loadConfig } from '../../src/config.ts';

describe('SINK=http configuration', () => {
  it("defaults match the receiver's bulk limits (1000 events, 4 MiB), gzip on, 10 s per request, Retry-After waited up to 30 s", () => {
    const config = loadConfig({ SINK: 'http', FORWARD_URL: 'https://central.example:8443/ingest' });
    assert.equal(config.sink, 'http');
    assert.deepEqual(config.forward, {
      url: 'https://central.example:8443/ingest',
      apiKey: undefined,
      maxEvents: 1000,
      maxBytes: 4 * 1024 * 1024,
      timeoutMs: 10_000,
      gzip: true,
      maxRetryAfterMs: 30_000,
    });
    assert.equal(config.forward.maxEvents, loadConfig({}).bulk.maxEvents);
    assert.equal(config.forward.maxBytes, loadConfig({}).bulk.bodyLimitBytes);
    assert.equal(loadConfig({ SINK: 'http', FORWARD_URL: 'http://c:8080', FORWARD_GZIP: 'false' }).forward.gzip, false);
  });

  it('refuses SINK=http without FORWARD_URL, and a URL that is not http(s), by name', () => {
    assert.throws(() => loadConfig({ SINK: 'http' }), (error: unknown) => error instanceof ConfigError && /FORWARD_URL/.test(error.message));
    assert.throws(() => loadConfig({ SINK: 'http', FORWARD_URL: 'ftp://c' }), (error: unknown) => error instanceof ConfigError && /FORWARD_URL/.test(error.message));
    assert.throws(() => loadConfig({ SINK: 'http', FORWARD_URL: 'http://c', FORWARD_GZIP: 'yes' }), (error: unknown) => error instanceof ConfigError && /FORWARD_GZIP/.test(error.message));
  });
});

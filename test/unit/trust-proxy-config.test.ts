import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigError, loadConfig } from '../../src/config.ts';

describe('TRUST_PROXY and AUTH_CACHE_TTL_MS', () => {
  it('TRUST_PROXY takes what fastify takes: true/false, a hop count, addresses and CIDRs; off by default', () => {
    assert.equal(loadConfig({}).trustProxy, false);
    assert.equal(loadConfig({ TRUST_PROXY: 'true' }).trustProxy, true);
    assert.equal(loadConfig({ TRUST_PROXY: 'false' }).trustProxy, false);
    assert.equal(loadConfig({ TRUST_PROXY: '2' }).trustProxy, 2);
    assert.deepEqual(loadConfig({ TRUST_PROXY: '10.0.0.0/8, 192.168.1.1,fd00::/8, loopback' }).trustProxy, [
      '10.0.0.0/8',
      '192.168.1.1',
      'fd00::/8',
      'loopback',
    ]);
  });

  for (const value of ['yes', '10.0.0.0/33', '10.0.0.1,', '300.1.1.1', '::1/129']) {
    it(`refuses TRUST_PROXY=${JSON.stringify(value)}, naming the variable`, () => {
      assert.throws(() => loadConfig({ TRUST_PROXY: value }), (error: unknown) => error instanceof ConfigError && /TRUST_PROXY: must be/.test(error.message));
    });
  }

  it('AUTH_CACHE_TTL_MS=0 is accepted (no cache)', () => {
    assert.equal(loadConfig({ AUTH_CACHE_TTL_MS: '0' }).auth.cacheTtlMs, 0);
  });
});

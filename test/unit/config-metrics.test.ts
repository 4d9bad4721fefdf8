import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { loadConfig } from '../../src/config.ts';

describe('where /metrics is served', () => {
  it('by default: a listener of its own on 127.0.0.1:9464, not the public one', () => {
    const config = loadConfig({});
    assert.equal(config.metricsPort, 9464);
    assert.equal(config.metricsHost, '127.0.0.1');
    assert.equal(config.metricsOnPublicListener, false);
  });

  it('METRICS_PORT and METRICS_HOST move that listener', () => {
    const config = loadConfig({ METRICS_PORT: '9100', METRICS_HOST: '0.0.0.0' });
    assert.equal(config.metricsPort, 9100);
    assert.equal(config.metricsHost, '0.0.0.0');
    assert.equal(config.metricsOnPublicListener, false);
  });

  it('METRICS_ON_PUBLIC_LISTENER=true alone: on the public listener only (the old behaviour)', () => {
    const config = loadConfig({ METRICS_ON_PUBLIC_LISTENER: 'true' });
    assert.equal(config.metricsOnPublicListener, true);
    assert.equal(config.metricsPort, undefined);
  });

  it('METRICS_ON_PUBLIC_LISTENER=true with METRICS_PORT: both', () => {
    const config = loadConfig({ METRICS_ON_PUBLIC_LISTENER: 'true', METRICS_PORT: '9464' });
    assert.equal(config.metricsOnPublicListener, true);
    assert.equal(config.metricsPort, 9464);
  });

  it('refuses a METRICS_ON_PUBLIC_LISTENER that is neither true nor false', () => {
    assert.throws(() => loadConfig({ METRICS_ON_PUBLIC_LISTENER: 'yes' }), /METRICS_ON_PUBLIC_LISTENER/);
  });
});

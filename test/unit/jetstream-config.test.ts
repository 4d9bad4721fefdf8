import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, it } from 'node:test';
import { ConfigError, loadConfig } from '../../src/config.ts';
import { loadConsumerConfig } from '../../src/consumer/consumer-config.ts';

describe('SINK=jetstream configuration', () => {
  it('defaults: SINK=postgres; NATS at 127.0.0.1:4222, stream AUDIT_EVENTS on audit.>, 5 s publish timeout, 2 min duplicate window', () => {
    const config = loadConfig({});
    assert.equal(config.sink, 'postgres');
    assert.deepEqual(config.jetstream, {
      url: 'nats://127.0.0.1:4222',
      stream: 'AUDIT_EVENTS',
      subjectPrefix: 'audit',
      publishTimeoutMs: 5000,
      connectTimeoutMs: 5000,
      duplicateWindowMs: 120_000,
    });
    assert.equal(loadConfig({ SINK: 'jetstream' }).sink, 'jetstream');
  });

  it('refuses a bad value by name', () => {
    assert.throws(() => loadConfig({ SINK: 'kafka' }), (error: unknown) => error instanceof ConfigError && /SINK/.test(error.message));
    assert.throws(() => loadConfig({ NATS_STREAM: 'a.b' }), (error: unknown) => error instanceof ConfigError && /NATS_STREAM/.test(error.message));
    assert.throws(() => loadConfig({ NATS_SUBJECT_PREFIX: 'audit.>' }), (error: unknown) => error instanceof ConfigError && /NATS_SUBJECT_PREFIX/.test(error.message));
  });

  it("the consumer runs beside a service: DATA_DIR ./.data-consumer and METRICS_PORT 9465 unless set; its own variables' defaults", () => {
    const config = loadConsumerConfig({});
    assert.equal(config.service.dataDir, path.resolve('./.data-consumer'));
    assert.equal(config.service.metricsPort, 9465);
    assert.deepEqual({ ...config, service: undefined }, { service: undefined, durableName: 'audit-ingest-postgres', batchSize: 500, fetchExpiresMs: 1000, ackWaitMs: 60_000 });
    const set = loadConsumerConfig({ DATA_DIR: '/tmp/c', METRICS_PORT: '0', CONSUMER_BATCH_SIZE: '50' });
    assert.equal(set.service.dataDir, '/tmp/c');
    assert.equal(set.service.metricsPort, 0);
    assert.equal(set.batchSize, 50);
    assert.throws(() => loadConsumerConfig({ CONSUMER_FETCH_EXPIRES_MS: '200' }), (error: unknown) => error instanceof ConfigError && /CONSUMER_FETCH_EXPIRES_MS/.test(error.message));
  });
});

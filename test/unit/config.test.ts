import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, it } from 'node:test';
import { ConfigError, loadConfig } from '../../src/config.ts';

describe('loadConfig', () => {
  it('applies the documented defaults', () => {
    const config = loadConfig({});
    assert.equal(config.port, 8080);
    assert.equal(config.batch.maxSize, 500);
    assert.equal(config.batch.maxWaitMs, 200);
    assert.equal(config.batch.maxBytes, 4 * 1024 * 1024);
    assert.equal(config.queue.capacity, 2048);
    assert.equal(config.queue.shedHighWater, 0.8);
    assert.equal(config.shutdownTimeoutMs, 30_000);
    assert.equal(config.ackMode, 'queued');
    assert.equal(config.databaseUrl, undefined);
    assert.equal(config.db.rollups, false);
    assert.equal(loadConfig({ ROLLUPS: 'on' }).db.rollups, true);
    assert.deepEqual(config.audit, { chain: false, signingKey: undefined, checkpointFile: undefined, checkpointWebhook: undefined, checkpointEvents: 10_000, checkpointIntervalMs: 60_000 });
    const audit = loadConfig({ AUDIT_CHAIN: 'on', AUDIT_SIGNING_KEY_FILE: 'k.pem', AUDIT_CHECKPOINT_FILE: 'c.ndjson' }).audit;
    assert.deepEqual(audit.signingKey, { file: path.resolve('k.pem') });
    assert.equal(audit.checkpointFile, path.resolve('c.ndjson'));
    const hook = loadConfig({ AUDIT_CHAIN: 'on', AUDIT_SIGNING_KEY: 'pem', AUDIT_CHECKPOINT_WEBHOOK_URL: 'https://evidence.example/checkpoints', AUDIT_CHECKPOINT_WEBHOOK_TOKEN: 't' }).audit;
    assert.equal(hook.checkpointFile, undefined, 'the webhook alone is a destination');
    assert.deepEqual(hook.checkpointWebhook, { url: 'https://evidence.example/checkpoints', token: 't', timeoutMs: 10_000, retryMaxDelayMs: 60_000 });
    assert.equal(config.dataDir, path.resolve('./.data'));
    assert.ok(Object.isFrozen(config));
  });

  const bad: [Record<string, string>, RegExp][] = [
    [{ PORT: 'eighty' }, /PORT: .*number/i],
    [{ PORT: '70000' }, /PORT:/],
    [{ ACK_MODE: 'sometimes' }, /ACK_MODE: .*queued.*committed/],
    [{ ROLLUPS: 'yes' }, /ROLLUPS: .*on.*off/],
    [{ AUDIT_CHAIN: 'yes' }, /AUDIT_CHAIN: .*on.*off/],
    [{ AUDIT_CHAIN: 'on', AUDIT_CHECKPOINT_FILE: 'c.ndjson' }, /AUDIT_CHECKPOINT_FILE: signed checkpoints need a key/],
    [{ AUDIT_SIGNING_KEY: 'pem', AUDIT_CHECKPOINT_FILE: 'c.ndjson' }, /AUDIT_CHECKPOINT_FILE: checkpoints sign the audit chain: they need AUDIT_CHAIN=on/],
    [{ AUDIT_SIGNING_KEY: 'pem', AUDIT_SIGNING_KEY_FILE: 'k.pem' }, /AUDIT_SIGNING_KEY: set AUDIT_SIGNING_KEY_FILE or AUDIT_SIGNING_KEY, not both/],
    [{ AUDIT_CHAIN: 'on', AUDIT_CHECKPOINT_WEBHOOK_URL: 'https://e.example/c' }, /AUDIT_CHECKPOINT_WEBHOOK_URL: signed checkpoints need a key/],
    [{ AUDIT_SIGNING_KEY: 'pem', AUDIT_CHECKPOINT_WEBHOOK_URL: 'https://e.example/c' }, /AUDIT_CHECKPOINT_WEBHOOK_URL: checkpoints sign the audit chain: they need AUDIT_CHAIN=on/],
    [{ AUDIT_CHAIN: 'on', AUDIT_SIGNING_KEY: 'pem', AUDIT_CHECKPOINT_WEBHOOK_URL: 'ftp://e.example/c' }, /AUDIT_CHECKPOINT_WEBHOOK_URL:/],
    [{ AUDIT_CHECKPOINT_WEBHOOK_TOKEN: 't' }, /AUDIT_CHECKPOINT_WEBHOOK_TOKEN: is sent to AUDIT_CHECKPOINT_WEBHOOK_URL/],
    [{ AUDIT_CHAIN: 'on', AUDIT_SIGNING_KEY: 'pem', AUDIT_CHECKPOINT_WEBHOOK_URL: 'https://e.example/c', AUDIT_CHECKPOINT_WEBHOOK_TIMEOUT_MS: '5' }, /AUDIT_CHECKPOINT_WEBHOOK_TIMEOUT_MS:/],
    [{ DATABASE_URL: 'mysql://x' }, /DATABASE_URL:/],
    [{ SHED_LOW_WATER: '0.9' }, /SHED_LOW_WATER: must be below SHED_HIGH_WATER/],
    [{ BATCH_MAX_SIZE: '5000' }, /BATCH_MAX_SIZE: must not exceed QUEUE_CAPACITY/],
  ];
  for (const [environment, message] of bad) {
    it(`names the variable in the error for ${JSON.stringify(environment)}`, () => {
      assert.throws(() => loadConfig(environment), (error: unknown) => {
        assert.ok(error instanceof ConfigError);
        assert.match(error.message, message);
        return true;
      });
    });
  }
});

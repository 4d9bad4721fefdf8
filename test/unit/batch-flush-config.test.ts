import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigError, loadConfig } from '../../src/config.ts';

describe('BATCH_FLUSH, BATCH_WINDOW, BATCH_LATENCY_SLO_MS', () => {
  it('flush naturally with ACK_MODE=committed and on the window with queued, unless BATCH_FLUSH says otherwise', () => {
    assert.equal(loadConfig({}).batch.flushPolicy, 'window');
    assert.equal(loadConfig({ ACK_MODE: 'committed' }).batch.flushPolicy, 'natural');
    assert.equal(loadConfig({ ACK_MODE: 'committed', BATCH_FLUSH: 'window' }).batch.flushPolicy, 'window');
    assert.equal(loadConfig({ ACK_MODE: 'queued', BATCH_FLUSH: 'natural' }).batch.flushPolicy, 'natural');
  });

  it('keep a static window and a 250 ms SLO by default', () => {
    const { batch } = loadConfig({});
    assert.equal(batch.window, 'static');
    assert.equal(batch.latencySloMs, 250);
    assert.equal(loadConfig({ BATCH_WINDOW: 'adaptive', BATCH_LATENCY_SLO_MS: '400' }).batch.latencySloMs, 400);
  });

  it('refuse unknown values, naming the variable', () => {
    for (const [name, value] of [['BATCH_FLUSH', 'smart'], ['BATCH_WINDOW', 'dynamic'], ['BATCH_LATENCY_SLO_MS', '0']] as const) {
      assert.throws(() => loadConfig({ [name]: value }), (error: unknown) => error instanceof ConfigError && error.message.includes(name));
    }
  });
});

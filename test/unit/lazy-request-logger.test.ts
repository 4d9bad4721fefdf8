import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { describe, it } from 'node:test';
import Fastify from 'fastify';
import { pino } from 'pino';
import { nextCheckPhase } from '../../src/http/reply-batch.ts';
import { LazyChildLogger, lazyChildLoggerFactory } from '../../src/telemetry/lazy-child-logger.ts';

function capturingLogger(level = 'info') {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
      callback();
    },
  });
  return { logger: pino({ level }, stream), lines };
}

describe('the lazy request logger', () => {
  it('logs with the request bindings, and reading its level makes no child', () => {
    const { logger, lines } = capturingLogger('debug');
    let children = 0;
    const counting = Object.assign(Object.create(logger) as typeof logger, {
      child: (...args: Parameters<typeof logger.child>) => {
        children += 1;
        return logger.child(...args);
      },
    });
    const lazy = new LazyChildLogger(counting, { reqId: 'req-7' });
    assert.equal(lazy.level, 'debug');
    assert.equal(children, 0, 'reading the level made a child');
    lazy.warn({ code: 'X' }, 'first');
    lazy.debug('second');
    assert.equal(children, 1, 'the child is made once, on first use');
    assert.deepEqual(
      lines.map((line) => [line.reqId, line.msg, line.level]),
      [
        ['req-7', 'first', 40],
        ['req-7', 'second', 20],
      ],
    );
    assert.equal(lines[0]!.code, 'X');
  });

  it('is what fastify hands a route as request.log, with the request id bound', async () => {
    const { logger, lines } = capturingLogger();
    const app = Fastify({ loggerInstance: logger, childLoggerFactory: lazyChildLoggerFactory, disableRequestLogging: true });
    app.get('/quiet', () => ({ ok: true }));
    app.get('/loud', (request) => {
      request.log.info('handled');
      return { ok: true };
    });
    await app.inject({ url: '/quiet' });
    assert.equal(lines.length, 0, 'a request that logs nothing writes nothing');
    await app.inject({ url: '/loud' });
    assert.equal(lines.length, 1);
    assert.equal(lines[0]!.msg, 'handled');
    assert.equal(typeof lines[0]!.reqId, 'string');
    await app.close();
  });
});

describe('answers written together', () => {
  it('resolves every wait begun in one turn together, after the poll phase, and starts over after', async () => {
    const order: string[] = [];
    const first = nextCheckPhase();
    const second = nextCheckPhase();
    assert.equal(first, second, 'one promise per turn');
    void first.then(() => order.push('answers'));
    setImmediate(() => order.push('immediate queued after'));
    await Promise.resolve();
    assert.deepEqual(order, [], 'not resolved within the same turn');
    await first;
    assert.deepEqual(order, ['answers']);
    assert.notEqual(nextCheckPhase(), first, 'a wait begun later waits for the next turn');
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(order, ['answers', 'immediate queued after']);
  });
});

import assert from 'node:assert/strict';
import net from 'node:net';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { pino } from 'pino';
import { loadConfig } from '../../src/config.ts';
import { createPool } from '../../src/db/pool.ts';
import { CopyTimeoutError } from '../../src/sink/postgres-copy-sink.ts';
import { errorSerializers, serializeError } from '../../src/telemetry/error-serializer.ts';
import { serverUrl } from '../helpers/database.ts';

const ALLOWED = new Set(['type', 'message', 'code', 'sqlstate', 'severity', 'detail', 'hint', 'constraint', 'table', 'column', 'syscall', 'address', 'port', 'stack', 'cause', 'errors']);

function assertOnlyAllowedKeys(value: unknown): void {
  for (const [key, inner] of Object.entries(value as Record<string, unknown>)) {
    assert.ok(ALLOWED.has(key), `unexpected field ${key}`);
    if (key === 'cause') assertOnlyAllowedKeys(inner);
    if (key === 'errors') for (const each of inner as unknown[]) assertOnlyAllowedKeys(each);
  }
}

/** A pino logger with the serializer, writing its lines into an array. */
function capturingLogger() {
  const lines: Record<string, unknown>[] = [];
  const raw: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      raw.push(chunk.toString());
      lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
      callback();
    },
  });
  return { logger: pino({ serializers: errorSerializers }, stream), lines, raw };
}

describe('error serializer', () => {
  let client: pg.Client;
  before(async () => {
    client = new pg.Client({ connectionString: serverUrl() });
    await client.connect();
  });
  after(() => client.end());

  it('keeps what an operator needs from a real pg error: code (SQLSTATE), severity, detail, hint', async () => {
    const error = await client.query("SELECT 'x'::int").then(
      () => assert.fail('expected an error'),
      (caught: unknown) => caught,
    );
    const out = serializeError(error);
    assert.equal(out.type, 'error'); // pg's DatabaseError is named 'error'
    assert.equal(out.code, '22P02');
    assert.equal(out.sqlstate, '22P02');
    assert.equal(out.severity, 'ERROR');
    assert.match(out.message, /invalid input syntax for type integer/);
    assertOnlyAllowedKeys(out);
    assert.ok(JSON.stringify(out).length < 3_000);
  });

  it('never dumps a client, connection or any other field an error carries; the log line stays small and has err.code', () => {
    const error = Object.assign(new Error('Connection terminated unexpectedly', { cause: new Error('socket hang up') }), {
      code: 'ECONNRESET',
      client,
      connection: (client as unknown as { connection: unknown }).connection,
      query: 'SELECT secret',
    });
    const defaultLine = JSON.stringify(pino.stdSerializers.err(error));
    const { logger, lines, raw } = capturingLogger();
    logger.warn({ err: error }, 'a batch write failed');
    const err = lines[0]!.err as Record<string, unknown>;
    assert.equal(err.code, 'ECONNRESET');
    assert.equal((err.cause as { message: string }).message, 'socket hang up');
    assertOnlyAllowedKeys(err);
    assert.ok(!raw[0]!.includes('SELECT secret'));
    assert.ok(raw[0]!.length < 4_000, `line is ${raw[0]!.length} bytes`);
    assert.match(defaultLine, /"client":\{/, "pino's default serializer would have logged the client");
    assert.ok(defaultLine.length > raw[0]!.length, `pino's default would log ${defaultLine.length} bytes, this ${raw[0]!.length}`);
  });

  it('bounds the stack, the message and the cause chain, and survives a cycle', () => {
    let error: Error = new Error('root');
    for (let i = 0; i < 20; i += 1) error = new Error(`level ${i}`, { cause: error });
    const cyclic = new Error('cyclic');
    (cyclic as { cause?: unknown }).cause = cyclic;
    const deep = serializeError(error);
    let depth = 0;
    for (let at: typeof deep | undefined = deep; at; at = at.cause) depth += 1;
    assert.ok(depth <= 5, `depth ${depth}`);
    assert.equal(serializeError(cyclic).cause, undefined);
    const long = serializeError(new Error('x'.repeat(100_000)));
    assert.ok(long.message.length < 1_100);
    assert.ok((long.stack ?? '').split('\n').length <= 10);
    assert.deepEqual(serializeError('a string'), { type: 'string', message: 'a string' });
    const aggregate = serializeError(new AggregateError([Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED', port: 1 })], 'all failed'));
    assert.equal(aggregate.errors?.[0]?.code, 'ECONNREFUSED');
    assert.equal(aggregate.errors[0].port, 1);
  });

  it('gives the timeouts a code: COPY, pool connect (no connection in time) and pool wait (no free client)', async () => {
    assert.equal(serializeError(new CopyTimeoutError('slow')).code, 'SINK_ERR_COPY_TIMEOUT');
    // A server that accepts and never answers: what a frozen database looks like.
    const sockets = new Set<net.Socket>();
    const silent = net.createServer((socket) => sockets.add(socket));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const { port } = silent.address() as net.AddressInfo;
    const pool = createPool(`postgres://nobody:nothing@127.0.0.1:${port}/none`, { ...loadConfig({}).db, poolSize: 1, connectTimeoutMs: 200 }, pino({ level: 'silent' }));
    try {
      await assert.rejects(pool.query('SELECT 1'), { code: 'DB_ERR_CONNECT_TIMEOUT' });
      await assert.rejects(pool.connect(), { code: 'DB_ERR_CONNECT_TIMEOUT' });
    } finally {
      await pool.end();
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => silent.close(() => resolve()));
    }
    const busy = createPool(serverUrl(), { ...loadConfig({}).db, poolSize: 1, connectTimeoutMs: 200 }, pino({ level: 'silent' }));
    const held = await busy.connect();
    try {
      await assert.rejects(busy.query('SELECT 1'), (error: Error & { code?: string }) => {
        assert.equal(error.message, 'timeout exceeded when trying to connect');
        assert.equal(error.code, 'DB_ERR_CONNECT_TIMEOUT');
        return true;
      });
    } finally {
      held.release();
      await busy.end();
    }
  });
});

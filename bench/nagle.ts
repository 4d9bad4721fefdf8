/**
 * `npm run bench:nagle [-- --requests=N]`
 *
 * Nagle's algorithm and delayed ACKs. A request/response exchange where one side sends its message
 * in two small writes and then waits: with Nagle on (no TCP_NODELAY) the second write is held until
 * the first is acknowledged, and the peer, which has nothing to send until the message is whole,
 * delays that ACK (Linux: at least 40 ms) — a ~40 ms floor per exchange. With TCP_NODELAY it is gone.
 *  (A) a client that writes its headers and its body in two writes, against the service itself
 *      (src/server.ts): client socket with and without TCP_NODELAY, and one write as a control;
 *  (B) the server side: a minimal TCP server that answers in two writes (headers, then body), with
 *      and without TCP_NODELAY on its accepted sockets — what the service's HTTP listener would
 *      suffer without it;
 *  (C) proof of which of the service's sockets have TCP_NODELAY: the service run under strace,
 *      every setsockopt(TCP_NODELAY) it makes, by socket (accepted HTTP or outgoing PostgreSQL).
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { makeBodies } from './lib/event-body.ts';
import { createModeDatabase } from './lib/database.ts';
import { ROOT, SERVER_START_TIMEOUT_MS, TSX, progress, type BenchOptions, type Context } from './lib/harness.ts';
import { parseBenchArgs } from './lib/options.ts';
import { percentile } from './lib/paced.ts';
import { barChart, writeFigure, type Datum } from './lib/plot.ts';
import { freePort, sleep, spawnChild, stopChild, waitUntilHealthy } from './lib/processes.ts';
import { fmt, ms, runScenario } from './lib/scenario.ts';

interface Exchange {
  readonly label: string;
  readonly short?: string;
  readonly p50: number;
  readonly p99: number;
  readonly max: number;
  readonly count: number;
}

const HEADER_END = '\r\n\r\n';
/** Keep-alive connections the strace run opens, one after another. */
const httpConnections = 3;

/** Sequential exchanges on one keep-alive connection; `send` writes one request. Latency per exchange. */
async function exchanges(label: string, port: number, noDelay: boolean, count: number, send: (socket: net.Socket, i: number) => void): Promise<Exchange> {
  const socket = net.connect({ host: '127.0.0.1', port, noDelay });
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  // net.connect's noDelay option only ever sets it; make "off" explicit.
  socket.setNoDelay(noDelay);
  const latencies = new Float64Array(count);
  let buffer = '';
  let waiting: (() => void) | undefined;
  socket.setEncoding('latin1');
  socket.on('data', (chunk: string) => {
    buffer += chunk;
    const end = buffer.indexOf(HEADER_END);
    if (end < 0) return;
    const length = /content-length:\s*(\d+)/i.exec(buffer.slice(0, end));
    const total = end + HEADER_END.length + Number(length?.[1] ?? 0);
    if (buffer.length < total) return;
    buffer = buffer.slice(total);
    waiting?.();
  });
  for (let i = 0; i < count; i++) {
    const started = performance.now();
    await new Promise<void>((resolve) => {
      waiting = resolve;
      send(socket, i);
    });
    latencies[i] = performance.now() - started;
  }
  socket.destroy();
  const sorted = latencies.slice().sort();
  return { label, p50: percentile(sorted, 0.5), p99: percentile(sorted, 0.99), max: sorted.at(-1) ?? 0, count };
}

function requestParts(body: string): { head: string; body: string } {
  return { head: `POST /event HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n`, body };
}

/** (B): a server that answers every request (headers then body) in two writes. */
async function twoWriteServer(noDelay: boolean): Promise<{ port: number; close: () => Promise<void> }> {
  const server = net.createServer({ noDelay }, (socket) => {
    socket.setNoDelay(noDelay);
    let buffer = '';
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => {
      buffer += chunk;
      for (;;) {
        const end = buffer.indexOf(HEADER_END);
        if (end < 0) return;
        const length = Number(/content-length:\s*(\d+)/i.exec(buffer.slice(0, end))?.[1] ?? 0);
        if (buffer.length < end + 4 + length) return;
        buffer = buffer.slice(end + 4 + length);
        const body = '{"id":"0190b6f0-0000-7000-8000-000000000000"}';
        socket.write(`HTTP/1.1 202 Accepted\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n`);
        setImmediate(() => socket.write(body));
      }
    });
    socket.on('error', () => {});
  });
  const port = await freePort();
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return { port, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}

interface SocketOption {
  readonly pid: string;
  readonly socket: string;
  readonly value: string;
}

/** (C): the service under strace; its setsockopt(TCP_NODELAY) calls. */
async function straceService(
  ctx: Context,
  requests: number,
): Promise<{ options: SocketOption[]; servicePort: number; postgresPort: string; accepted: number; postgresConnects: number; poolConnections: number; strace: string }> {
  const db = await createModeDatabase(ctx.server, 'nagle');
  const port = await freePort();
  const traceFile = path.join(ctx.runDir, 'strace-sockets.txt');
  const child = spawnChild('strace', ['-f', '-qq', '-yy', '-e', 'trace=setsockopt,accept4,connect', '-o', traceFile, process.execPath, ...TSX, path.join(ROOT, 'src', 'server.ts')], {
    env: { ...process.env, DATABASE_URL: db.url, LOG_LEVEL: 'warn', DATA_DIR: path.join(ctx.runDir, 'nagle-data'), AUTH: 'off', METRICS_PORT: '', METRICS_ON_PUBLIC_LISTENER: 'true', PORT: String(port), HOST: '127.0.0.1' },
    logFile: path.join(ctx.runDir, 'nagle-service.log'),
  });
  let poolConnections = 0;
  try {
    await waitUntilHealthy(`http://127.0.0.1:${port}/healthz`, child, SERVER_START_TIMEOUT_MS);
    const bodies = makeBodies(16);
    for (let c = 0; c < httpConnections; c++) {
      await exchanges(`strace-${c}`, port, true, requests, (socket, i) => socket.write(requestParts(bodies[i % bodies.length]!).head + bodies[i % bodies.length]!));
    }
    await sleep(500);
    const out = execFileSync('psql', [db.url, '-Atc', `SELECT count(*) FROM pg_stat_activity WHERE datname = '${db.name}' AND pid <> pg_backend_pid()`], { encoding: 'utf8' });
    poolConnections = Number(out.trim());
  } finally {
    // SIGTERM the traced node process (strace's child), so strace exits with it.
    const stracePid = child.process.pid!;
    const tracee = readFileSync(`/proc/${stracePid}/task/${stracePid}/children`, 'utf8').trim().split(/\s+/)[0];
    if (tracee) process.kill(Number(tracee), 'SIGTERM');
    await stopChild(child, 30_000);
  }
  const strace = readFileSync(traceFile, 'utf8');
  const options: SocketOption[] = [];
  for (const line of strace.split('\n')) {
    // -yy: "PID setsockopt(FD<TCP:[local->remote]>, SOL_TCP, TCP_NODELAY, [1], 4) = 0" (the addresses hold a '>').
    const match = /^(\d+)\s+setsockopt\(\d+<(TCP:\[[^\]]*\])>, SOL_TCP, TCP_NODELAY, \[(\d+)\]/.exec(line);
    if (match) options.push({ pid: match[1]!, socket: match[2]!, value: match[3]! });
  }
  const postgresPort = new URL(db.url).port;
  // accept4(...) = FD<TCP:[service port->client]>; connect(FD<…>, {… sin_port=htons(PORT) …}).
  const accepted = strace.split('\n').filter((line) => /accept4\(/.test(line) && line.includes(`= `) && line.includes(`<TCP:[127.0.0.1:${port}->`)).length;
  const postgresConnects = strace.split('\n').filter((line) => /\bconnect\(/.test(line) && line.includes(`htons(${postgresPort})`)).length;
  return { options, servicePort: port, postgresPort, accepted, postgresConnects, poolConnections, strace };
}

const args = parseBenchArgs(process.argv.slice(2), { numeric: { requests: { default: 100, min: 10, max: 2000 } } });
const options: BenchOptions = { cpuProf: false, durationSeconds: 0, warmupSeconds: 0, connections: 1, rateConnections: 1, lowRate: 0 };
await runScenario('nagle', options, `one keep-alive connection at a time, ${args.requests} sequential exchanges each; loopback only`, async (ctx) => {
  const n = args.requests;
  // (C) first: it also gives a running service for (A).
  const traced = await straceService(ctx, 20);
  progress(`strace: ${traced.options.length} setsockopt(TCP_NODELAY) calls`);
  const db = await createModeDatabase(ctx.server, 'nagle_a');
  const port = await freePort();
  const service = spawnChild(process.execPath, [...TSX, path.join(ROOT, 'src', 'server.ts')], {
    env: { ...process.env, DATABASE_URL: db.url, LOG_LEVEL: 'warn', DATA_DIR: path.join(ctx.runDir, 'nagle-a-data'), AUTH: 'off', METRICS_PORT: '', METRICS_ON_PUBLIC_LISTENER: 'true', PORT: String(port), HOST: '127.0.0.1' },
    logFile: path.join(ctx.runDir, 'nagle-a-service.log'),
  });
  const results: Exchange[] = [];
  try {
    await waitUntilHealthy(`http://127.0.0.1:${port}/healthz`, service, SERVER_START_TIMEOUT_MS);
    const bodies = makeBodies(64);
    const oneWrite = (socket: net.Socket, i: number) => {
      const parts = requestParts(bodies[i % bodies.length]!);
      socket.write(parts.head + parts.body);
    };
    const twoWrites = (socket: net.Socket, i: number) => {
      const parts = requestParts(bodies[i % bodies.length]!);
      socket.write(parts.head);
      // The body in a later write, after the headers left the socket buffer (as a client that streams its body).
      setImmediate(() => socket.write(parts.body));
    };
    await exchanges('warm-up', port, true, 50, oneWrite);
    results.push({ ...(await exchanges('(A) client: headers + body in one write, Nagle on', port, false, n, oneWrite)), short: 'A: client, 1 write, Nagle on' });
    results.push({ ...(await exchanges('(A) client: two writes, Nagle on (no TCP_NODELAY)', port, false, n, twoWrites)), short: 'A: client, 2 writes, Nagle on' });
    results.push({ ...(await exchanges('(A) client: two writes, TCP_NODELAY', port, true, n, twoWrites)), short: 'A: client, 2 writes, TCP_NODELAY' });
  } finally {
    await stopChild(service, 30_000);
  }
  for (const noDelay of [false, true]) {
    const server = await twoWriteServer(noDelay);
    try {
      const body = makeBodies(1)[0]!;
      await exchanges('warm-up', server.port, true, 20, (socket) => socket.write(requestParts(body).head + body));
      const exchange = await exchanges(`(B) server answers in two writes, ${noDelay ? 'TCP_NODELAY' : 'Nagle on (no TCP_NODELAY)'}`, server.port, true, n, (socket) => socket.write(requestParts(body).head + body));
      results.push({ ...exchange, short: `B: server, 2 writes, ${noDelay ? 'TCP_NODELAY' : 'Nagle on'}` });
    } finally {
      await server.close();
    }
  }
  const figure = await writeFigure(
    ctx.runDir,
    barChart({
      name: 'nagle',
      title: 'Request/response latency with a message sent in two writes, with and without TCP_NODELAY',
      data: results.flatMap((r): Datum[] => [
        { exchange: r.short ?? r.label, stat: 'p50', ms: r.p50 },
        { exchange: r.short ?? r.label, stat: 'p99', ms: r.p99 },
      ]),
      x: { field: 'exchange', title: '' },
      y: { field: 'ms', title: 'ms' },
      series: { field: 'stat', title: '' },
    }),
  );
  const http = traced.options.filter((o) => o.socket.includes(`127.0.0.1:${traced.servicePort}->`));
  const postgres = traced.options.filter((o) => o.socket.includes(`->127.0.0.1:${traced.postgresPort}]`));
  const other = traced.options.filter((o) => !http.includes(o) && !postgres.includes(o));
  const lines = [
    `## Nagle / delayed ACK: ${n} sequential exchanges per row, one keep-alive connection`,
    '',
    '| exchange | p50 ms | p99 ms | max ms |',
    '| --- | ---: | ---: | ---: |',
    ...results.map((r) => `| ${r.label} | ${ms(r.p50)} | ${ms(r.p99)} | ${ms(r.max)} |`),
    '',
    `Figure: ${path.basename(figure.svg)} (and .png)`,
    '',
    '## Which of the service\'s sockets set TCP_NODELAY (strace -f -yy -e trace=setsockopt,accept4,connect, the service as started by npm start)',
    '',
    '| sockets | connections (accept4 / connect calls in the trace) | setsockopt(TCP_NODELAY, 1) calls | with value 0 |',
    '| --- | ---: | ---: | ---: |',
    `| accepted HTTP connections (local port ${traced.servicePort}: this bench's ${httpConnections} and the readiness polls) | ${fmt(traced.accepted)} | ${fmt(http.filter((o) => o.value === '1').length)} | ${fmt(http.filter((o) => o.value === '0').length)} |`,
    `| PostgreSQL connections (to port ${traced.postgresPort}: migrations, pool, probes; ${traced.poolConnections} open at the end) | ${fmt(traced.postgresConnects)} | ${fmt(postgres.filter((o) => o.value === '1').length)} | ${fmt(postgres.filter((o) => o.value === '0').length)} |`,
    `| other (socket not yet connected when set, or another peer) | — | ${fmt(other.filter((o) => o.value === '1').length)} | ${fmt(other.filter((o) => o.value === '0').length)} |`,
    '',
    'First lines of the trace:',
    '',
    '```',
    ...traced.strace.split('\n').filter((l) => l.includes('TCP_NODELAY') || l.includes('accept4(') || l.includes('htons(')).slice(0, 10),
    '```',
    '',
    '### Method',
    '',
    '- (A) raw net.Socket to src/server.ts (WAL mode, AUTH=off), requests sent one after another on one connection; "two writes": socket.write(headers), then socket.write(body) on the next turn of the event loop. Latency: from the first write to the whole answer read.',
    '- (B) a net.createServer({ noDelay }) that writes the status line and headers, then the body on the next turn; the client writes each request in one write with TCP_NODELAY.',
    '- (C) strace -f -qq -yy -e trace=setsockopt of the node process running src/server.ts; -yy prints each socket\'s addresses, which tell an accepted HTTP socket (local port = the service\'s) from an outgoing PostgreSQL one (remote port = PostgreSQL\'s). node:http sets TCP_NODELAY on every accepted socket (http.createServer\'s noDelay option, default true since Node 18.0.0, nodejs/node#42163); node-postgres calls stream.setNoDelay(true) in Connection.connect (node_modules/pg/lib/connection.js).',
  ];
  return { markdown: lines.join('\n'), json: { results, nodelay: traced.options } };
});

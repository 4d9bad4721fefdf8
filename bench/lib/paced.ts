/**
 * An open-loop load generator at a steady rate: request i is due at start + i/rate, whatever
 * happened to earlier ones, and its latency is measured from when it was due (so a stall shows up
 * in the percentiles instead of slowing the generator down: no coordinated omission).
 *
 * Why not autocannon's overallRate: autocannon gives each connection a per-second quota that it
 * sends back to back at the start of every second, then idles. The server sees bursts at full
 * closed-loop speed, not a steady rate, and autocannon's coordinated-omission correction uses a
 * 1 ms expected interval that adds synthetic samples to every response slower than 1 ms.
 *
 * Like autocannon, it writes pre-encoded HTTP/1.1 requests on raw keep-alive sockets and reads only
 * the status line and Content-Length of each answer, so the generator's own cost (which counts in
 * the latencies it measures) stays small. One request in flight per connection.
 */
import net from 'node:net';
import { performance } from 'node:perf_hooks';

export interface PacedOptions {
  readonly url: string;
  readonly ratePerSecond: number;
  readonly durationSeconds: number;
  /** Keep-alive connections opened at the start. */
  readonly connections: number;
  /**
   * At most this many connections (default: `connections`). A request that falls due while every
   * open connection is busy opens another one, up to this bound, as k6's constant-arrival-rate
   * executor adds VUs up to maxVUs: the arrivals stay independent of the server instead of
   * queueing behind a fixed set of connections. Past the bound it waits for one (and that counts).
   */
  readonly maxConnections?: number;
  readonly bodies: readonly string[];
  readonly timeoutMs: number;
  /** Sent at the same rate before the measured duration (answers counted, latencies not recorded). */
  readonly warmupSeconds: number;
  /** Extra header lines sent with every request (e.g. `Authorization: Bearer …`). */
  readonly headers?: Readonly<Record<string, string>>;
}

export interface PacedResult {
  readonly durationSeconds: number;
  readonly sent: number;
  readonly statusCodes: Record<string, number>;
  readonly errors: number;
  readonly timeouts: number;
  /** Milliseconds, one per answered 2xx request after the warm-up. */
  readonly latenciesMs: Float64Array;
  /** How late the generator itself sent requests (its own event-loop delay), p99 in ms. */
  readonly sendLagP99Ms: number;
  /** Connections opened in all (the initial ones and those added when every one was busy). */
  readonly connectionsOpened: number;
}

const HEADER_END = Buffer.from('\r\n\r\n');
const CONTENT_LENGTH = /\r\ncontent-length:\s*(\d+)/i;

/** A keep-alive connection that answers one request at a time. */
class Connection {
  readonly #host: string;
  readonly #port: number;
  readonly #onAnswer: (connection: Connection, status: number) => void;
  readonly #onFailure: (connection: Connection, timedOut: boolean) => void;
  readonly #timeoutMs: number;
  #socket: net.Socket | undefined;
  #buffer: Buffer = Buffer.alloc(0);
  #timer: NodeJS.Timeout | undefined;
  busy = false;

  constructor(
    host: string,
    port: number,
    timeoutMs: number,
    onAnswer: (connection: Connection, status: number) => void,
    onFailure: (connection: Connection, timedOut: boolean) => void,
  ) {
    this.#host = host;
    this.#port = port;
    this.#timeoutMs = timeoutMs;
    this.#onAnswer = onAnswer;
    this.#onFailure = onFailure;
  }

  send(request: Buffer): void {
    this.busy = true;
    this.#timer = setTimeout(() => this.#fail(true), this.#timeoutMs);
    this.#connected().write(request);
  }

  close(): void {
    clearTimeout(this.#timer);
    this.#socket?.destroy();
    this.#socket = undefined;
  }

  #connected(): net.Socket {
    if (this.#socket) return this.#socket;
    const socket = net.connect({ host: this.#host, port: this.#port, noDelay: true });
    socket.on('data', (chunk: Buffer) => this.#read(chunk));
    socket.on('error', () => {});
    socket.on('close', () => {
      if (this.#socket === socket) {
        this.#socket = undefined;
        this.#buffer = Buffer.alloc(0);
        if (this.busy) this.#fail(false);
      }
    });
    this.#socket = socket;
    return socket;
  }

  #read(chunk: Buffer): void {
    this.#buffer = this.#buffer.length === 0 ? chunk : Buffer.concat([this.#buffer, chunk]);
    const headerEnd = this.#buffer.indexOf(HEADER_END);
    if (headerEnd < 0) return;
    const head = this.#buffer.toString('latin1', 0, headerEnd);
    const length = CONTENT_LENGTH.exec(head);
    const status = Number(head.slice(9, 12));
    if (!length || !Number.isInteger(status)) {
      this.#fail(false); // chunked or malformed: not something these servers send
      return;
    }
    const end = headerEnd + HEADER_END.length + Number(length[1]);
    if (this.#buffer.length < end) return;
    this.#buffer = this.#buffer.subarray(end);
    clearTimeout(this.#timer);
    this.busy = false;
    this.#onAnswer(this, status);
  }

  #fail(timedOut: boolean): void {
    clearTimeout(this.#timer);
    this.#socket?.destroy();
    this.#socket = undefined;
    this.#buffer = Buffer.alloc(0);
    if (!this.busy) return;
    this.busy = false;
    this.#onFailure(this, timedOut);
  }
}

export async function runPaced(options: PacedOptions): Promise<PacedResult> {
  const target = new URL(options.url);
  const extraHeaders = Object.entries(options.headers ?? {})
    .map(([name, value]) => `${name}: ${value}\r\n`)
    .join('');
  const requests = options.bodies.map((body) =>
    Buffer.from(
      `POST ${target.pathname} HTTP/1.1\r\nHost: ${target.host}\r\nContent-Type: application/json\r\n${extraHeaders}` +
        `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    ),
  );
  const warmup = Math.floor(options.ratePerSecond * options.warmupSeconds);
  const total = warmup + Math.floor(options.ratePerSecond * options.durationSeconds);
  const intervalMs = 1000 / options.ratePerSecond;
  const latencies = new Float64Array(total);
  const lags = new Float64Array(total);
  const statusCodes: Record<string, number> = {};
  let recorded = 0;
  let errors = 0;
  let timeouts = 0;
  let sent = 0;
  let settled = 0;
  let onAllSettled: () => void = () => {};
  const allSettled = new Promise<void>((resolve) => (onAllSettled = resolve));

  // Due requests waiting for a free connection, oldest first; `inFlight` maps a connection to its request.
  const waiting: number[] = [];
  let waitingHead = 0;
  const inFlight = new Map<Connection, number>();
  const idle: Connection[] = [];

  const settle = (connection: Connection) => {
    inFlight.delete(connection);
    settled++;
    if (settled === total) onAllSettled();
    dispatch(connection);
  };
  const onAnswer = (connection: Connection, status: number) => {
    const index = inFlight.get(connection)!;
    statusCodes[status] = (statusCodes[status] ?? 0) + 1;
    if (status >= 200 && status < 300 && index >= warmup) latencies[recorded++] = performance.now() - dueAt(index);
    settle(connection);
  };
  const onFailure = (connection: Connection, timedOut: boolean) => {
    if (timedOut) timeouts++;
    else errors++;
    settle(connection);
  };
  const started = performance.now();
  const dueAt = (index: number) => started + index * intervalMs;
  const dispatch = (connection: Connection) => {
    if (waitingHead < waiting.length) {
      const index = waiting[waitingHead++]!;
      inFlight.set(connection, index);
      connection.send(requests[index % requests.length]!);
    } else {
      idle.push(connection);
    }
  };
  const maxConnections = Math.max(options.connections, options.maxConnections ?? options.connections);
  let connectionsOpened = 0;
  const openConnection = () => {
    connectionsOpened++;
    return new Connection(target.hostname, Number(target.port), options.timeoutMs, onAnswer, onFailure);
  };
  for (let i = 0; i < options.connections; i++) idle.push(openConnection());

  if (total === 0) onAllSettled();
  await new Promise<void>((resolve) => {
    const tick = () => {
      const now = performance.now();
      while (sent < total && dueAt(sent) <= now) {
        lags[sent] = now - dueAt(sent);
        waiting.push(sent++);
        const connection = idle.pop() ?? (connectionsOpened < maxConnections ? openConnection() : undefined);
        if (connection) dispatch(connection);
      }
      if (sent >= total) resolve();
      else setTimeout(tick, Math.max(0, Math.min(1, dueAt(sent) - now)));
    };
    tick();
  });
  const sendSeconds = (performance.now() - started) / 1000;
  const sortedLags = lags.subarray(warmup, sent).slice().sort();
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([allSettled, new Promise((resolve) => (timer = setTimeout(resolve, options.timeoutMs + 1000)))]);
  clearTimeout(timer);
  for (const connection of [...idle, ...inFlight.keys()]) connection.close();
  return {
    durationSeconds: sendSeconds,
    sent,
    statusCodes,
    errors,
    timeouts,
    latenciesMs: latencies.subarray(0, recorded),
    sendLagP99Ms: percentile(sortedLags, 0.99),
    connectionsOpened,
  };
}

/** The q-quantile (0..1) of sorted values, nearest rank. */
export function percentile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return 0;
  const index = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[index]!;
}

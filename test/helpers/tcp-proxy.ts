import net from 'node:net';

/** One direction of one proxied connection: bytes from `from` delivered to `to`, in order. */
interface Direction {
  readonly from: net.Socket;
  readonly to: net.Socket;
  /** Chunks read and not yet delivered (held while frozen, or until their latency has passed). */
  readonly held: { chunk: Buffer; dueAtMs: number }[];
  timer: NodeJS.Timeout | undefined;
}

/**
 * A TCP proxy in front of PostgreSQL that a test (or `npm run chaos`) can break without touching
 * the database server, in the ways a network breaks:
 *  - cut(): reset every open connection and refuse new ones; restore() listens again;
 *  - freeze(): a partition that stops every byte without resetting anything (connections stay
 *    open, new ones are accepted and hang); thaw() delivers what was held back and carries on;
 *  - setLatencyMs(ms): every chunk from the database is delivered `ms` later (latency per round trip).
 */
export class TcpProxy {
  readonly #target: { host: string; port: number };
  readonly #sockets = new Set<net.Socket>();
  readonly #directions = new Set<Direction>();
  /** Connections accepted while frozen, connected upstream at the thaw. */
  readonly #pending = new Set<net.Socket>();
  #server: net.Server | undefined;
  #port = 0;
  #frozen = false;
  #latencyMs = 0;

  constructor(target: { host: string; port: number }) {
    this.#target = target;
  }

  get port(): number {
    return this.#port;
  }

  get frozen(): boolean {
    return this.#frozen;
  }

  async start(): Promise<void> {
    const server = net.createServer((client) => {
      this.#track(client);
      if (this.#frozen) {
        client.pause();
        this.#pending.add(client);
        client.on('close', () => this.#pending.delete(client));
      } else {
        this.#connectUpstream(client);
      }
    });
    // A port below the ephemeral range: while the proxy is cut, a client connecting to an
    // ephemeral port nobody listens on can be handed that very port as its source port and
    // connect to itself, holding the port so the proxy could not listen on it again.
    for (let attempt = 0; ; attempt += 1) {
      const port = this.#port || 20_000 + Math.floor(Math.random() * 10_000);
      try {
        await new Promise<void>((resolve, reject) => {
          server.once('error', reject);
          server.listen(port, '127.0.0.1', () => {
            server.off('error', reject);
            resolve();
          });
        });
        this.#port = port;
        break;
      } catch (error) {
        if (this.#port || attempt > 20) throw error;
      }
    }
    this.#server = server;
  }

  #track(socket: net.Socket): void {
    this.#sockets.add(socket);
    socket.on('close', () => this.#sockets.delete(socket));
    socket.on('error', () => {});
  }

  #connectUpstream(client: net.Socket): void {
    const upstream = net.connect(this.#target.port, this.#target.host);
    this.#track(upstream);
    const up = this.#forward(client, upstream, 0);
    const down = this.#forward(upstream, client, 1);
    const end = () => {
      for (const direction of [up, down]) {
        clearTimeout(direction.timer);
        this.#directions.delete(direction);
      }
      client.destroy();
      upstream.destroy();
    };
    client.on('close', end);
    upstream.on('close', end);
    client.resume();
  }

  /** Forward `from` → `to`; `latencyFactor` 1 for the direction that carries the database's answers. */
  #forward(from: net.Socket, to: net.Socket, latencyFactor: number): Direction {
    const direction: Direction = { from, to, held: [], timer: undefined };
    this.#directions.add(direction);
    from.on('data', (chunk: Buffer) => {
      direction.held.push({ chunk, dueAtMs: Date.now() + this.#latencyMs * latencyFactor });
      this.#deliver(direction);
    });
    return direction;
  }

  #deliver(direction: Direction): void {
    if (this.#frozen) return;
    const now = Date.now();
    while (direction.held.length > 0 && direction.held[0]!.dueAtMs <= now) {
      direction.to.write(direction.held.shift()!.chunk);
    }
    if (direction.held.length > 0 && direction.timer === undefined) {
      direction.timer = setTimeout(() => {
        direction.timer = undefined;
        this.#deliver(direction);
      }, direction.held[0]!.dueAtMs - now);
    }
  }

  /** Reset every open connection and refuse new ones (the port stays reserved for restore). */
  async cut(): Promise<void> {
    const server = this.#server;
    this.#server = undefined;
    // A reset for established connections; a socket still connecting is only destroyed (a reset
    // there leaves a pending connect request that can keep the process from exiting).
    for (const socket of this.#sockets) {
      if (socket.connecting) socket.destroy();
      else socket.resetAndDestroy();
    }
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  /** Accept connections again, on the same port. */
  restore(): Promise<void> {
    return this.start();
  }

  /** Stop every byte, both ways, on every connection; accept new connections and answer nothing. */
  freeze(): void {
    this.#frozen = true;
    for (const socket of this.#sockets) socket.pause();
  }

  /** Deliver what was held back and forward again; connections accepted meanwhile go upstream now. */
  thaw(): void {
    this.#frozen = false;
    for (const client of this.#pending) this.#connectUpstream(client);
    this.#pending.clear();
    for (const direction of this.#directions) {
      this.#deliver(direction);
      direction.from.resume();
    }
  }

  /** Delay every chunk from the database by `ms` (0: none). */
  setLatencyMs(ms: number): void {
    this.#latencyMs = ms;
  }

  async stop(): Promise<void> {
    this.thaw();
    await this.cut();
  }
}

/** The same database URL, through the proxy. */
export function throughProxy(databaseUrl: string, proxy: TcpProxy): string {
  const url = new URL(databaseUrl);
  url.hostname = '127.0.0.1';
  url.port = String(proxy.port);
  return url.toString();
}

import net from 'node:net';

/**
 * A TCP proxy in front of PostgreSQL that a test can cut and restore: a real network failure
 * (connections reset, new ones refused) without touching the shared database server.
 */
export class TcpProxy {
  readonly #target: { host: string; port: number };
  readonly #sockets = new Set<net.Socket>();
  #server: net.Server | undefined;
  #port = 0;

  constructor(target: { host: string; port: number }) {
    this.#target = target;
  }

  get port(): number {
    return this.#port;
  }

  async start(): Promise<void> {
    const server = net.createServer((client) => {
      const upstream = net.connect(this.#target.port, this.#target.host);
      for (const socket of [client, upstream]) {
        this.#sockets.add(socket);
        socket.on('close', () => this.#sockets.delete(socket));
        socket.on('error', () => {});
      }
      client.pipe(upstream).pipe(client);
      client.on('close', () => upstream.destroy());
      upstream.on('close', () => client.destroy());
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

  async stop(): Promise<void> {
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

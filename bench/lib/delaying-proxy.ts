import net from 'node:net';

/**
 * A TCP proxy on loopback that adds a round-trip time to every connection through it: each chunk
 * is delivered half the RTT after it was read, in each direction, in order (a long-haul link's
 * latency, not its bandwidth). It counts the bytes each way: what crossed the "wire".
 */
export class DelayingProxy {
  readonly #target: { host: string; port: number };
  readonly #sockets = new Set<net.Socket>();
  #server: net.Server | undefined;
  /** Added round-trip time; change it between runs (connections already open follow at once). */
  rttMs = 0;
  bytesUp = 0;
  bytesDown = 0;

  constructor(target: { host: string; port: number }) {
    this.#target = target;
  }

  async start(): Promise<number> {
    this.#server = net.createServer((client) => {
      const upstream = net.connect(this.#target);
      for (const socket of [client, upstream]) {
        socket.setNoDelay(true);
        this.#sockets.add(socket);
        socket.on('close', () => this.#sockets.delete(socket));
        socket.on('error', () => {
          client.destroy();
          upstream.destroy();
        });
      }
      this.#relay(client, upstream, (n) => (this.bytesUp += n));
      this.#relay(upstream, client, (n) => (this.bytesDown += n));
    });
    await new Promise<void>((resolve) => this.#server!.listen(0, '127.0.0.1', resolve));
    return (this.#server.address() as net.AddressInfo).port;
  }

  #relay(from: net.Socket, to: net.Socket, count: (bytes: number) => void): void {
    const held: { chunk: Buffer; dueAtMs: number }[] = [];
    let timer: NodeJS.Timeout | undefined;
    const deliver = () => {
      timer = undefined;
      const now = performance.now();
      while (held.length > 0 && held[0]!.dueAtMs <= now) to.write(held.shift()!.chunk);
      if (held.length > 0) timer = setTimeout(deliver, held[0]!.dueAtMs - now);
    };
    from.on('data', (chunk: Buffer) => {
      count(chunk.length);
      const oneWayMs = this.rttMs / 2;
      if (oneWayMs === 0 && held.length === 0) {
        to.write(chunk);
        return;
      }
      held.push({ chunk, dueAtMs: performance.now() + oneWayMs });
      timer ??= setTimeout(deliver, oneWayMs);
    });
    from.on('end', () => {
      const end = () => (held.length === 0 ? to.end() : setTimeout(end, this.rttMs / 2 || 1));
      end();
    });
  }

  async stop(): Promise<void> {
    for (const socket of this.#sockets) socket.destroy();
    await new Promise<void>((resolve) => this.#server?.close(() => resolve()) ?? resolve());
  }
}

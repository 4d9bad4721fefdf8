import { appendFile, readFile } from 'node:fs/promises';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { CheckpointLine } from '../../src/audit/checkpoints.ts';

/** How the receiver answers one request: the status, and whether it stored the body before answering. */
export interface Answer {
  readonly status: number;
  readonly store: boolean;
  readonly retryAfter?: string;
}

/**
 * A real receiver: node:http on 127.0.0.1, appending each body to a file — as a receiver should,
 * deduping lines by (tenant, seq, key), so a retried POST stores nothing twice. `answers` script
 * the first requests; the rest get 200 and are stored.
 */
export class Receiver {
  readonly requests: { headers: IncomingHttpHeaders; body: string; status: number }[] = [];
  readonly #seen = new Set<string>();
  readonly #server: Server;
  readonly #file: string;
  readonly #answers: Answer[];

  constructor(file: string, answers: Answer[] = []) {
    this.#file = file;
    this.#answers = [...answers];
    this.#server = createServer((request, response) => {
      const chunks: Buffer[] = [];
      request.on('data', (chunk: Buffer) => chunks.push(chunk));
      request.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8');
        const answer = this.#answers.shift() ?? { status: 200, store: true };
        this.requests.push({ headers: request.headers, body, status: answer.status });
        void (answer.store ? this.#store(body) : Promise.resolve()).then(() => {
          response.writeHead(answer.status, answer.retryAfter === undefined ? {} : { 'retry-after': answer.retryAfter });
          response.end();
        });
      });
    });
  }

  async #store(body: string): Promise<void> {
    const fresh = body
      .split('\n')
      .filter(Boolean)
      .filter((text) => {
        const line = JSON.parse(text) as CheckpointLine;
        const id = `${line.tenant} ${line.seq} ${line.key}`;
        if (this.#seen.has(id)) return false;
        this.#seen.add(id);
        return true;
      });
    if (fresh.length > 0) await appendFile(this.#file, fresh.map((text) => `${text}\n`).join(''));
  }

  async listen(): Promise<number> {
    await new Promise<void>((resolve) => this.#server.listen(0, '127.0.0.1', resolve));
    return (this.#server.address() as AddressInfo).port;
  }

  async storedLines(): Promise<CheckpointLine[]> {
    const text = await readFile(this.#file, 'utf8').catch(() => '');
    return text
      .split('\n')
      .filter(Boolean)
      .map((line) => JSON.parse(line) as CheckpointLine);
  }

  async close(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}


/**
 * The `<tenant> <seq>` of each line of a webhook outbox file (audit-checkpoints-outbox.ndjson),
 * sorted; undefined when there is no file.
 */
export async function readOutboxEntries(file: string): Promise<string[] | undefined> {
  const text = await readFile(file, 'utf8').catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return undefined;
    throw error;
  });
  if (text === undefined) return undefined;
  return text
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const parsed = JSON.parse(line) as CheckpointLine;
      return `${parsed.tenant} ${parsed.seq}`;
    })
    .sort();
}

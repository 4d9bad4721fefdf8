/**
 * The service as a child process (`node --import tsx src/server.ts`), the way an operator runs it,
 * on a fixed port so a restart comes back where the load generator sends.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const REPOSITORY = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const SERVER_ENTRY = path.join(REPOSITORY, 'src/server.ts');
/** Log lines kept per process (the last ones): enough to explain a failure, bounded for the soak. */
const KEPT_LINES = 2000;

const live = new Set<ChildProcess>();
/** SIGKILL every service still running (on the way out). */
export function killAllServices(): void {
  for (const child of live) child.kill('SIGKILL');
}

export class ServiceProcess {
  readonly child: ChildProcess;
  readonly origin: string;
  readonly startedAtMs = Date.now();
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; atMs: number }>;
  /** Resolves when it listens; rejects if it exits first. */
  readonly listening: Promise<void>;
  readonly #lines: string[] = [];
  readonly #watchers: { pattern: RegExp; resolve: () => void }[] = [];

  constructor(environment: Record<string, string>, port: number) {
    this.origin = `http://127.0.0.1:${port}`;
    this.child = spawn(process.execPath, ['--import', 'tsx', SERVER_ENTRY], {
      cwd: REPOSITORY,
      env: {
        ...process.env,
        HOST: '127.0.0.1',
        PORT: String(port),
        METRICS_PORT: '0',
        METRICS_ON_PUBLIC_LISTENER: 'true',
        LOG_LEVEL: 'info',
        AUTH: 'off',
        ...environment,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    live.add(this.child);
    this.exited = new Promise((resolve) => this.child.once('exit', (code, signal) => resolve({ code, signal, atMs: Date.now() })));
    void this.exited.then(() => live.delete(this.child));
    let buffered = '';
    const onData = (chunk: Buffer) => {
      buffered += chunk.toString('utf8');
      let newline: number;
      while ((newline = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, newline);
        buffered = buffered.slice(newline + 1);
        this.#line(line);
      }
    };
    this.child.stdout!.on('data', onData);
    this.child.stderr!.on('data', onData);
    this.listening = new Promise<void>((resolve, reject) => {
      this.#watchers.push({ pattern: /Server listening at/, resolve });
      void this.exited.then(({ code, signal }) => reject(new Error(`the service exited (${code ?? signal}) before listening:\n${this.logs.slice(-20).join('\n')}`)));
    });
    this.listening.catch(() => {});
  }

  get pid(): number {
    return this.child.pid!;
  }

  get logs(): readonly string[] {
    return this.#lines;
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  #line(line: string): void {
    this.#lines.push(line);
    if (this.#lines.length > KEPT_LINES) this.#lines.splice(0, this.#lines.length - KEPT_LINES);
    for (const watcher of [...this.#watchers]) {
      if (watcher.pattern.test(line)) {
        this.#watchers.splice(this.#watchers.indexOf(watcher), 1);
        watcher.resolve();
      }
    }
  }

  /** Resolves at the first log line of its start-up that matches; false if it listens or exits first. */
  waitForStartupLog(pattern: RegExp): Promise<boolean> {
    return Promise.race([
      new Promise<boolean>((resolve) => this.#watchers.push({ pattern, resolve: () => resolve(true) })),
      this.listening.then(
        () => false,
        () => false,
      ),
    ]);
  }

  kill(signal: NodeJS.Signals): void {
    if (this.running) this.child.kill(signal);
  }

  /** SIGTERM, SIGKILL after `graceMs`. */
  async stop(graceMs: number): Promise<{ code: number | null; signal: NodeJS.Signals | null; atMs: number }> {
    this.kill('SIGTERM');
    const timer = setTimeout(() => this.kill('SIGKILL'), graceMs);
    const exit = await this.exited;
    clearTimeout(timer);
    return exit;
  }
}

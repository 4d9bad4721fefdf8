import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const REPOSITORY = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const SERVER_ENTRY = path.join(REPOSITORY, 'src/server.ts');

export interface ServerProcessOptions {
  /** 'npm-start': run `npm start` in the repository, as the README says, instead of node directly. */
  readonly command?: 'node' | 'npm-start';
  /** Its own process group (so a test can signal the group, as a terminal's Ctrl-C does). */
  readonly detached?: boolean;
}

export interface ServerProcess {
  readonly origin: string;
  readonly child: ChildProcess;
  /** Every log line so far. */
  readonly logs: string[];
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/**
 * Servers still running. A test that fails between a spawn and its kill would otherwise leave its
 * server running after the test process ends (it was seen: orphaned crash-recovery servers kept
 * loading the machine), so whatever is left is SIGKILLed when this process exits.
 */
const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

/**
 * Spawn the real server (`src/server.ts`) and wait until it listens. METRICS_PORT defaults to 0
 * (a free port) so that servers running side by side do not fight over 9464, and
 * METRICS_ON_PUBLIC_LISTENER to true so a test reads `${origin}/metrics`; pass '' for the
 * service's own defaults.
 */
export async function startServerProcess(
  environment: Record<string, string>,
  startTimeoutMs = 30_000,
  options: ServerProcessOptions = {},
): Promise<ServerProcess> {
  const [file, args] = options.command === 'npm-start' ? ['npm', ['start', '--silent']] : [process.execPath, ['--import', 'tsx', SERVER_ENTRY]];
  const child = spawn(file, args, {
    cwd: REPOSITORY,
    env: { ...process.env, HOST: '127.0.0.1', PORT: '0', METRICS_PORT: '0', METRICS_ON_PUBLIC_LISTENER: 'true', LOG_LEVEL: 'info', AUTH: 'off', ...environment },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: options.detached ?? false,
  });
  const logs: string[] = [];
  running.add(child);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('exit', (code, signal) => {
      running.delete(child);
      resolve({ code, signal });
    }),
  );
  const origin = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not listen within ${startTimeoutMs} ms:\n${logs.join('\n')}`)), startTimeoutMs);
    let buffered = '';
    const onData = (chunk: Buffer) => {
      buffered += chunk.toString('utf8');
      let newline: number;
      while ((newline = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, newline);
        buffered = buffered.slice(newline + 1);
        logs.push(line);
        const match = /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(line);
        if (match) {
          clearTimeout(timer);
          resolve(match[1]!);
        }
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    void exited.then(({ code }) => {
      clearTimeout(timer);
      reject(new Error(`server exited with ${code} before listening:\n${logs.join('\n')}`));
    });
  });
  return { origin, child, logs, exited };
}

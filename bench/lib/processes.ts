/**
 * Child processes with bounded lifetimes. Every child is registered so killAll() (run on exit,
 * on error and on SIGINT/SIGTERM) leaves nothing behind.
 */
import { findFreePort } from '../../src/free-port.ts';
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';

const live = new Set<ChildProcess>();

export interface Child {
  readonly process: ChildProcess;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export interface SpawnOptions {
  readonly env?: NodeJS.ProcessEnv;
  /** Stdout and stderr are appended here. */
  readonly logFile: string;
  /** Keep stdout in memory instead (for the load generator's JSON). */
  readonly captureStdout?: boolean;
}

export function spawnChild(command: string, args: readonly string[], options: SpawnOptions): Child & { stdout: () => string } {
  const child = spawn(command, args, {
    env: options.env ?? process.env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  live.add(child);
  const log = createWriteStream(options.logFile, { flags: 'a' });
  let captured = '';
  if (options.captureStdout) child.stdout.on('data', (chunk: Buffer) => (captured += chunk.toString('utf8')));
  else child.stdout.pipe(log, { end: false });
  child.stderr.pipe(log, { end: false });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('error', () => resolve({ code: null, signal: null }));
    child.once('exit', (code, signal) => resolve({ code, signal }));
  }).finally(() => {
    live.delete(child);
    setTimeout(() => log.end(), 50);
  });
  return { process: child, exited, stdout: () => captured };
}

/** SIGTERM, then SIGKILL after `graceMs`. Resolves with the exit code (null when killed). */
export async function stopChild(child: Child, graceMs: number): Promise<number | null> {
  if (child.process.exitCode !== null || child.process.signalCode !== null) return child.process.exitCode;
  child.process.kill('SIGTERM');
  const timer = setTimeout(() => child.process.kill('SIGKILL'), graceMs);
  const { code } = await child.exited;
  clearTimeout(timer);
  return code;
}

/** Resolve with the child's exit, or kill it and reject after `timeoutMs`. */
export async function waitForExit(child: Child, timeoutMs: number, what: string) {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      child.process.kill('SIGKILL');
      reject(new Error(`${what} did not finish within ${timeoutMs} ms; killed`));
    }, timeoutMs);
  });
  try {
    return await Promise.race([child.exited, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Kill every child still running (SIGKILL: used on the way out). */
export function killAll(): void {
  for (const child of live) {
    try {
      child.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
  live.clear();
}

/** A free loopback port (the service's own helper). */
export const freePort = findFreePort;

/** Poll `url` until it answers 2xx; fail after `timeoutMs` or as soon as the child exits. */
export async function waitUntilHealthy(url: string, child: Child, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let exited = false;
  void child.exited.then(() => (exited = true));
  while (Date.now() < deadline) {
    if (exited) throw new Error(`the server exited before answering ${url} (code ${child.process.exitCode})`);
    try {
      const response = await fetch(url, { signal: AbortSignal.timeout(1000) });
      await response.arrayBuffer();
      if (response.ok) return;
    } catch {
      // not listening yet
    }
    await sleep(100);
  }
  throw new Error(`${url} did not answer within ${timeoutMs} ms`);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * On SIGINT or SIGTERM: kill every child, run `stop`, exit 130. Returns a function that removes
 * the handlers again.
 */
export function exitOnSignal(stop: () => Promise<unknown>, log: (line: string) => void): () => void {
  const onSignal = (signal: NodeJS.Signals) => {
    log(`${signal}: stopping every child process`);
    killAll();
    void stop().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  return () => {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  };
}

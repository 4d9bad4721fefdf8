/**
 * What the micro-benchmarks (compression, serialisation, queue structure, Nagle) share: a results
 * directory, the machine lines, the report printed and written. No PostgreSQL.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { RESULTS_DIR, ROOT, progress } from './harness.ts';
import { describeMachine } from './machine.ts';

export async function runMicro(name: string, setup: string, work: (runDir: string) => Promise<{ markdown: string; json: unknown }> | { markdown: string; json: unknown }): Promise<void> {
  const machine = describeMachine();
  const runDir = path.join(RESULTS_DIR, `${new Date().toISOString().replace(/[:.]/g, '-')}-${name}`);
  await mkdir(runDir, { recursive: true });
  progress(`results in ${path.relative(ROOT, runDir)}`);
  try {
    const output = await work(runDir);
    const rendered = [
      '## Machine',
      '',
      `- CPU: ${machine.cpu}, ${machine.cores} cores; memory ${machine.memoryGiB} GiB; ${machine.os}`,
      `- Node ${machine.node}; load average at start: ${machine.loadAverage}`,
      `- ${setup}`,
      '',
      output.markdown,
    ].join('\n');
    process.stdout.write(`\n${rendered}\n`);
    await writeFile(path.join(runDir, 'report.md'), `${rendered}\n`);
    await writeFile(path.join(runDir, 'results.json'), `${JSON.stringify({ machine, setup, results: output.json }, null, 2)}\n`);
  } catch (error) {
    process.stderr.write(`bench failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exitCode = 1;
  }
}

/**
 * Run `body` (which does `unitsPerCall` units) for at least `minMs`, after a warm-up of the same
 * length; `rounds` such measurements, best and median units per second.
 */
export function throughput(body: () => void, unitsPerCall: number, options: { minMs?: number; rounds?: number } = {}): { best: number; median: number } {
  const minMs = options.minMs ?? 300;
  const rounds = options.rounds ?? 5;
  const once = () => {
    let calls = 0;
    const started = performance.now();
    let elapsed = 0;
    while (elapsed < minMs) {
      body();
      calls++;
      elapsed = performance.now() - started;
    }
    return (calls * unitsPerCall * 1000) / elapsed;
  };
  once();
  const rates = Array.from({ length: rounds }, once).sort((a, b) => a - b);
  return { best: rates.at(-1)!, median: rates[Math.floor(rates.length / 2)]! };
}

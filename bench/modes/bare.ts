/** Mode (c): a bare Fastify handler that parses the JSON and answers 202 — the ceiling. */
import path from 'node:path';
import { BENCH_DIR, TSX, fullScenario, progress, rate, runLoadProcess, startHttpServer, steadyLoad, warmUp, withCpu, type Context } from '../lib/harness.ts';
import { stopChild } from '../lib/processes.ts';
import type { Measurement } from '../lib/report.ts';

/** Full load, then (as a floor for the latency target) the steady rate the service was given. */
export async function runBare(ctx: Context, steadyRate: number): Promise<Measurement[]> {
  progress('(c) bare Fastify: starting');
  const server = await startHttpServer(ctx, 'bare', [...TSX, path.join(BENCH_DIR, 'servers', 'bare.ts')], {});
  try {
    const url = `${server.baseUrl}/event`;
    const { measured } = await warmUp(ctx, 'bare', url);
    const { load, cpu } = await withCpu(ctx, server, async () => ({ load: await runLoadProcess(ctx, 'bare-full', measured) }));
    const { load: steady, cpu: steadyCpu } = await withCpu(ctx, server, async () => ({
      load: await runLoadProcess(ctx, 'bare-steady', steadyLoad(ctx, url, steadyRate, 'paced')),
    }));
    return [
      { mode: 'c', scenario: fullScenario(ctx, load), fullLoad: true, load, ...rate(load.ok2xx, load.durationSeconds), cpu },
      {
        mode: 'c',
        scenario: `steady ${steadyRate}/s (the service's half of peak), open loop`,
        fullLoad: false,
        load: steady,
        ...rate(steady.ok2xx, steady.durationSeconds),
        cpu: steadyCpu,
      },
    ];
  } finally {
    await stopChild(server.child, 5000);
  }
}

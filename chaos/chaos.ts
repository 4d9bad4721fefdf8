/**
 * The chaos suite as a function (`npm run chaos` and test/process/chaos-short.test.ts call it):
 * every scenario of chaos/lib/scenarios.ts in turn, each in a world of its own, under load, with
 * the obligation ledger. Returns one result per scenario; never throws for a scenario's failure
 * (that is a FAIL row), only when the run itself cannot start.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { existingServer, startOwnServer, type DatabaseServer } from './lib/postgres-server.ts';
import { ScenarioRun, type RunOptions, type ScenarioResult } from './lib/scenario-run.ts';
import { SCENARIOS, type Scenario } from './lib/scenarios.ts';

export interface ChaosOptions extends RunOptions {
  /** Scenario ids to run (default: all). */
  readonly only?: readonly string[];
  /** Use this server (no database faults then) instead of starting one. */
  readonly databaseUrl?: string;
}

const EMPTY = { acknowledged: 0, stored: 0, deadLettered: 0, lost: 0, duplicated: 0, unknown: 0, unexpected5xx: 0, refusals: '', maxRssMiB: 0, recoveryMs: [], drainedMs: [], slowHealth: 0, maxHealthMs: 0, notes: [] };

export async function withServer<T>(databaseUrl: string | undefined, work: (server: DatabaseServer) => Promise<T>): Promise<T> {
  let scratch: string | undefined;
  let server: DatabaseServer;
  if (databaseUrl) server = existingServer(databaseUrl);
  else {
    scratch = await mkdtemp(path.join(tmpdir(), 'ingest-chaos-pg-'));
    server = await startOwnServer(path.join(scratch, 'postgres'));
  }
  try {
    return await work(server);
  } finally {
    await server.stop();
    if (scratch) await rm(scratch, { recursive: true, force: true });
  }
}

export async function runChaos(options: ChaosOptions): Promise<ScenarioResult[]> {
  const chosen = SCENARIOS.filter((s) => !options.only || options.only.includes(s.id));
  return withServer(options.databaseUrl, async (server) => {
    const results: ScenarioResult[] = [];
    for (const scenario of chosen) results.push(await runScenario(scenario, server, options));
    return results;
  });
}

export async function runScenario(scenario: Scenario, server: DatabaseServer, options: RunOptions): Promise<ScenarioResult> {
  const run = new ScenarioRun(scenario.title, server, options);
  const skipped = scenario.unavailable?.(run);
  if (skipped) {
    options.log(`${scenario.id}: ${skipped}`);
    return { scenario: scenario.title, ...EMPTY, problems: [], skipped };
  }
  options.log(`${scenario.id}: ${scenario.title}`);
  const startedAt = Date.now();
  try {
    await server.control?.ensureRunning();
    const setUp = typeof scenario.setUp === 'function' ? await scenario.setUp(run) : scenario.setUp;
    await run.setUp(setUp);
    await scenario.inject(run);
    const result = await run.finish();
    options.log(`${scenario.id}: ${result.problems.length === 0 ? 'PASS' : `FAIL (${result.problems.join('; ')})`} in ${((Date.now() - startedAt) / 1000).toFixed(0)} s`);
    return result;
  } catch (error) {
    const logs = run.service?.logs.slice(-15).join('\n') ?? '';
    options.log(`${scenario.id}: ERROR ${(error as Error).stack ?? String(error)}\n${logs}`);
    return { scenario: scenario.title, ...EMPTY, problems: [`the scenario itself failed: ${(error as Error).message}`] };
  } finally {
    await run.cleanUp();
    await scenario.tearDown?.(run).catch((error: unknown) => options.log(`${scenario.id}: tear-down failed: ${String(error)}`));
  }
}

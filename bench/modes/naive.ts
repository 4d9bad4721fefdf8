/** Mode (a): one autocommit INSERT per event — the baseline. */
import path from 'node:path';
import { createModeDatabase } from '../lib/database.ts';
import {
  BENCH_DIR,
  SERVER_STOP_GRACE_MS,
  TSX,
  fullScenario,
  measureDatabase,
  perEvent,
  progress,
  rate,
  runLoadProcess,
  startHttpServer,
  warmUp,
  withCpu,
  type Context,
} from '../lib/harness.ts';
import { Ledger } from '../lib/ledger.ts';
import { stopChild } from '../lib/processes.ts';
import type { Integrity, Measurement } from '../lib/report.ts';

export async function runNaive(ctx: Context): Promise<{ measurement: Measurement; integrity: Integrity }> {
  const db = await createModeDatabase(ctx.server, 'naive');
  progress(`(a) naive: starting on ${db.name}`);
  const ledger = new Ledger();
  await ledger.open(ctx, db);
  const server = await startHttpServer(ctx, 'naive', [...TSX, path.join(BENCH_DIR, 'servers', 'naive.ts')], { DATABASE_URL: db.url });
  const exitCodes: (number | null)[] = [];
  let measurement: Measurement;
  try {
    const url = `${server.baseUrl}/event`;
    const { measured } = await ledger.warmUp(db, () => warmUp(ctx, 'naive', url), async () => {});
    const {
      result: { load, cpu },
      before,
      after,
    } = await measureDatabase(ctx, db, () => withCpu(ctx, server, async () => ({ load: await runLoadProcess(ctx, 'naive-full', measured) })));
    ledger.add(load);
    // Each 201 is one committed autocommit INSERT: one round trip (parse/bind/execute/sync).
    measurement = {
      mode: 'a',
      scenario: fullScenario(ctx, load),
      fullLoad: true,
      load,
      ...rate(load.ok2xx, load.durationSeconds),
      perEvent: perEvent(ctx, before, after, load.ok2xx, load.ok2xx),
      cpu,
    };
  } finally {
    exitCodes.push(await stopChild(server.child, SERVER_STOP_GRACE_MS));
  }
  return { measurement, integrity: await ledger.settle(ctx, db, 'a', exitCodes, exitCodes[0] === 0 ? [] : ['did not exit cleanly']) };
}

/** Mode (d): one COPY of the same rows — the floor of database cost. */
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { copyRows, writeRowsFile } from '../lib/copy-baseline.ts';
import { countRows, createModeDatabase } from '../lib/database.ts';
import { ROOT, measureDatabase, perEvent, progress, rate, type Context } from '../lib/harness.ts';
import type { Measurement } from '../lib/report.ts';

export async function runCopy(ctx: Context, rows: number, usePsql: boolean): Promise<{ measurement: Measurement; method: string }> {
  const db = await createModeDatabase(ctx.server, 'copy');
  const file = path.join(ctx.runDir, 'rows.copy');
  progress(`(d) COPY: writing ${rows} rows to ${path.relative(ROOT, file)}`);
  await writeRowsFile(file, rows);
  const { result: run, before, after } = await measureDatabase(ctx, db, () => copyRows(db.url, file, rows, usePsql, 120_000));
  await rm(file, { force: true });
  const stored = await countRows(db);
  if (stored !== rows) throw new Error(`COPY stored ${stored} rows, expected ${rows}`);
  progress(`(d) COPY: ${rows} rows in ${run.seconds.toFixed(2)} s`);
  return {
    method: run.method,
    measurement: {
      mode: 'd',
      scenario: `${run.method}, ${rows.toLocaleString('en-US')} rows, wall time incl. client start`,
      fullLoad: false,
      ...rate(rows, run.seconds),
      perEvent: perEvent(ctx, before, after, rows, 1),
    },
  };
}

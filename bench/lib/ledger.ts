/** Stored rows against 2xx answers, per mode database. */
import type { LoadResult } from '../generators/load.ts';
import { countRows, readCounters, type DatabaseCounters, type ModeDatabase } from './database.ts';
import type { Context } from './harness.ts';
import { sleep } from './processes.ts';
import { perEventText, type Integrity, type ModeId } from './report.ts';

/**
 * Stored rows against 2xx answers. Timed warm-ups cannot be checked (their generator drops requests
 * in flight), so the count is checked per segment: from the end of one warm-up to the start of the
 * next (or the end), where every run was counted.
 */
export class Ledger {
  #life: DatabaseCounters | undefined;
  #baseline = 0;
  #counted = 0;
  #rows = 0;
  #ok2xx = 0;
  readonly #warmups: string[] = [];
  readonly #rejected = new Map<string, number>();
  #errors = 0;

  /** Before the server starts: the database's counters, for its whole-life xact_commit. */
  async open(ctx: Context, db: ModeDatabase): Promise<void> {
    await sleep(300); // the migration's connection has just closed: let its backend publish its counters
    this.#life = await readCounters(ctx.server, db);
  }

  /** Close the counted segment, run a timed warm-up, wait for the server to settle, open a new segment. */
  async warmUp<T extends { warm: LoadResult }>(db: ModeDatabase, run: () => Promise<T>, settled: () => Promise<unknown>): Promise<T> {
    await this.#closeSegment(db);
    const result = await run();
    await settled();
    const after = await stableCount(db);
    this.#warmups.push(`${after - this.#baseline} rows for ${result.warm.ok2xx} 2xx`);
    this.#baseline = after;
    return result;
  }

  add(load: LoadResult): void {
    this.#counted += load.ok2xx;
    for (const [status, count] of Object.entries(load.statusCodes)) {
      if (!status.startsWith('2')) this.#rejected.set(status, (this.#rejected.get(status) ?? 0) + count);
    }
    this.#errors += load.errors;
  }

  async #closeSegment(db: ModeDatabase): Promise<void> {
    const now = await stableCount(db);
    this.#rows += now - this.#baseline;
    this.#ok2xx += this.#counted;
    this.#baseline = now;
    this.#counted = 0;
  }

  /** After the server exited (so every backend has published its counters). */
  async settle(ctx: Context, db: ModeDatabase, mode: ModeId, exitCodes: (number | null)[], problems: string[]): Promise<Integrity> {
    await this.#closeSegment(db);
    const total = this.#baseline;
    await sleep(300);
    const end = await readCounters(ctx.server, db);
    const commits = end.xactCommit - (this.#life?.xactCommit ?? 0);
    const warmups = `timed warm-ups left out (their generator drops requests in flight, which may still be stored): ${this.#warmups.join(', ')}`;
    const life = `pg_stat_database.xact_commit over the database's life (warm-ups, connection start-ups and the bench's count queries included): ${commits} for ${total} rows = ${perEventText(commits / total)} per row`;
    const rejected = [...this.#rejected].map(([status, count]) => `${count} × ${status}`);
    if (this.#errors > 0) rejected.push(`${this.#errors} connection errors or timeouts`);
    const answers = rejected.length > 0 ? `NOT every request was accepted: ${rejected.join(', ')}` : 'every request answered 2xx';
    return { mode, rows: this.#rows, ok2xx: this.#ok2xx, exitCodes, detail: [answers, ...problems, warmups, life].join('; ') };
  }
}

/** Count rows until two counts 300 ms apart agree (requests a generator dropped may still be committing). */
export async function stableCount(db: ModeDatabase): Promise<number> {
  let previous = await countRows(db);
  const deadline = Date.now() + 15_000;
  for (;;) {
    await sleep(300);
    const now = await countRows(db);
    if (now === previous || Date.now() > deadline) return now;
    previous = now;
  }
}

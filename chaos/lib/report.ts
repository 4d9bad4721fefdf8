/** The printed table: one row per scenario, the obligation ledger and the recovery times. */
import type { ScenarioResult } from './scenario-run.ts';

const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

function range(values: readonly number[]): string {
  if (values.length === 0) return '—';
  const max = Math.max(...values);
  if (values.length === 1) return seconds(max);
  return `${seconds(Math.min(...values))}–${seconds(max)} (${values.length})`;
}

export function resultTable(results: readonly ScenarioResult[]): string {
  const header = [
    'scenario',
    'acknowledged',
    'stored',
    'dead-lettered',
    'lost',
    'duplicated',
    'stored, never sent',
    '5xx other than 503',
    'max RSS',
    'time to recover (heal → first commit)',
    'backlog drained',
    'other answers',
    'result',
  ];
  const rows = results.map((r) =>
    r.skipped
      ? [r.scenario, '—', '—', '—', '—', '—', '—', '—', '—', '—', '—', '—', `skipped: ${r.skipped}`]
      : [
          r.scenario,
          r.acknowledged.toLocaleString('en-US'),
          r.stored.toLocaleString('en-US'),
          String(r.deadLettered),
          String(r.lost),
          String(r.duplicated),
          String(r.unknown),
          String(r.unexpected5xx),
          `${r.maxRssMiB.toFixed(0)} MiB`,
          range(r.recoveryMs),
          range(r.drainedMs),
          r.refusals,
          r.problems.length === 0 ? 'PASS' : `FAIL: ${r.problems.join('; ')}`,
        ],
  );
  const lines = [`| ${header.join(' | ')} |`, `| ${header.map(() => '---').join(' | ')} |`, ...rows.map((row) => `| ${row.join(' | ')} |`)];
  const notes = results.filter((r) => r.notes.length > 0).map((r) => `- ${r.scenario}: ${r.notes.join('; ')}; /healthz max ${r.maxHealthMs} ms`);
  return [...lines, '', ...notes].join('\n');
}

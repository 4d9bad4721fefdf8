/** The benchmark's results and their Markdown rendering. */
import type { LoadResult } from '../generators/load.ts';
import type { Machine } from './machine.ts';

export type ModeId = 'a' | 'b' | 'c' | 'd';

export const MODE_NAMES: Record<ModeId, string> = {
  a: '(a) naive: INSERT + commit per event',
  b: '(b) service (COPY batches)',
  c: '(c) bare Fastify, parse + 202',
  d: '(d) one COPY of the same rows',
};

export interface PerEvent {
  readonly commits: number;
  /** undefined when pg_stat_statements could not be read. */
  readonly statements: number | undefined;
  readonly roundTrips: number;
}

export interface Batching {
  readonly latencyP50Ms: number | undefined;
  readonly latencyP99Ms: number | undefined;
  readonly flushes: number;
  readonly meanSize: number;
  readonly sizes: string;
  readonly flushReasons: string;
  /** The service's event loop during the run (prom-client's monitorEventLoopDelay). */
  readonly eventLoopDelayP99Ms: number;
  readonly eventLoopDelayMaxMs: number;
  /** Time in garbage collection during the run and its drain. */
  readonly gcMs: number;
}

/** CPU milliseconds used during a run. */
export interface CpuUse {
  readonly serverMs: number | undefined;
  readonly postgresMs: number | undefined;
  readonly generatorMs: number;
  readonly otherMs: number | undefined;
}

export interface Measurement {
  readonly mode: ModeId;
  readonly scenario: string;
  /** Closed-loop full load: the row compared with (c). */
  readonly fullLoad: boolean;
  readonly load?: LoadResult;
  readonly events: number;
  readonly seconds: number;
  readonly eventsPerSecond: number;
  readonly perEvent?: PerEvent;
  readonly batching?: Batching;
  readonly cpu?: CpuUse;
}

export interface Integrity {
  readonly mode: ModeId;
  readonly rows: number;
  readonly ok2xx: number;
  readonly exitCodes: readonly (number | null)[];
  readonly detail: string;
}

export interface Target {
  readonly name: string;
  readonly measured: string;
  readonly pass: boolean | undefined;
}

export interface Report {
  readonly machine: Machine;
  readonly postgres: string;
  readonly psql: string;
  readonly setup: string;
  readonly measurements: readonly Measurement[];
  readonly integrity: readonly Integrity[];
  readonly targets: readonly Target[];
  readonly notes: readonly string[];
}

const fmt = (n: number | undefined, digits = 0) =>
  n === undefined || !Number.isFinite(n) ? '—' : n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });

/** 0.002 → "1/500 (0.0020)"; 1 → "1.00". */
export function perEventText(value: number | undefined): string {
  if (value === undefined || !Number.isFinite(value)) return '—';
  if (value > 0 && value < 0.2) return `1/${fmt(1 / value)} (${value.toFixed(4)})`;
  return value.toFixed(2);
}

function latencyText(load: LoadResult | undefined, key: 'p50' | 'p99'): string {
  if (!load) return '—';
  const ms = load.latency[key];
  return ms < 10 ? ms.toFixed(2) : ms.toFixed(1);
}

function cpuText(m: Measurement): string {
  if (!m.cpu || m.events === 0) return '—';
  const per = (ms: number | undefined) => (ms === undefined ? '—' : fmt((ms / m.events) * 1000));
  return `${per(m.cpu.serverMs)} · ${per(m.cpu.postgresMs)} · ${per(m.cpu.generatorMs)} · ${per(m.cpu.otherMs)}`;
}

export function renderReport(report: Report): string {
  const { machine } = report;
  const bare = report.measurements.find((m) => m.mode === 'c' && m.fullLoad);
  const lines: string[] = [
    '## Machine',
    '',
    `- CPU: ${machine.cpu}, ${machine.cores} cores; memory ${machine.memoryGiB} GiB; ${machine.os}`,
    `- Node ${machine.node}; PostgreSQL ${report.postgres}; ${report.psql}`,
    `- load average at start: ${machine.loadAverage}`,
    `- ${report.setup}`,
    '',
    '## Throughput, latency, database cost',
    '',
    '| mode | scenario | events/s | ÷ (c) | 2xx / non-2xx / errors | HTTP p50 ms | HTTP p99 ms | commits/event | statements/event | round trips/event | CPU ms per 1k events: server · postgres · load gen · other |',
    '| --- | --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |',
  ];
  for (const m of report.measurements) {
    const ratio = bare && (m.fullLoad || m.mode === 'd') ? `${(m.eventsPerSecond / bare.eventsPerSecond).toFixed(2)}×` : '—';
    const counts = m.load ? `${fmt(m.load.ok2xx)} / ${fmt(m.load.non2xx)} / ${fmt(m.load.errors)}` : `${fmt(m.events)} rows`;
    lines.push(
      `| ${MODE_NAMES[m.mode]} | ${m.scenario} | ${fmt(m.eventsPerSecond)} | ${ratio} | ${counts} | ${latencyText(m.load, 'p50')} | ${latencyText(m.load, 'p99')} | ${perEventText(m.perEvent?.commits)} | ${perEventText(m.perEvent?.statements)} | ${perEventText(m.perEvent?.roundTrips)} | ${cpuText(m)} |`,
    );
  }
  const batched = report.measurements.filter((m) => m.batching);
  if (batched.length > 0) {
    lines.push(
      '',
      '## Batching in the service (from its /metrics, per scenario)',
      '',
      '| scenario | batch latency p50 / p99 ms (accepted → committed) | flushes | mean batch | batch sizes (bucket: batches) | flush reasons | event-loop delay p99 / max ms | GC ms |',
      '| --- | ---: | ---: | ---: | --- | --- | ---: | ---: |',
    );
    for (const m of batched) {
      const b = m.batching!;
      lines.push(
        `| ${m.scenario} | ${fmt(b.latencyP50Ms, 1)} / ${fmt(b.latencyP99Ms, 1)} | ${fmt(b.flushes)} | ${fmt(b.meanSize, 1)} | ${b.sizes} | ${b.flushReasons} | ${fmt(b.eventLoopDelayP99Ms, 1)} / ${fmt(b.eventLoopDelayMaxMs, 1)} | ${fmt(b.gcMs)} |`,
      );
    }
  }
  lines.push('', '## Every event stored?', '');
  for (const check of report.integrity) {
    const ok = check.rows === check.ok2xx;
    lines.push(
      `- ${MODE_NAMES[check.mode]}: rows stored after the warm-up ${fmt(check.rows)} ${ok ? '==' : '!='} 2xx responses ${fmt(check.ok2xx)} — ${ok ? 'ok' : 'MISMATCH'}; exit codes after SIGTERM: ${check.exitCodes.map(String).join(', ')}${check.detail ? `; ${check.detail}` : ''}`,
    );
  }
  lines.push('', '## Targets', '', '| target | measured | result |', '| --- | --- | --- |');
  for (const target of report.targets) {
    const result = target.pass === undefined ? 'n/a' : target.pass ? 'PASS' : 'FAIL';
    lines.push(`| ${target.name} | ${target.measured} | ${result} |`);
  }
  lines.push('', '## Notes', '', ...report.notes.map((note) => `- ${note}`));
  return lines.join('\n');
}

/**
 * Where the time goes: the functions with the most self time in a V8 .cpuprofile, and self time
 * grouped by where the code lives (src/, each package, node internals, GC).
 *   node --import tsx bench/summarise-profile.ts [file.cpuprofile] [--top=N] [--from-us=T --to-us=T]
 * --from-us/--to-us keep the samples taken in that window (process.hrtime() microseconds).
 * Without a file: the newest main-thread .cpuprofile in bench/results/ (Node names them
 * CPU.<date>.<time>.<pid>.<thread id>.<seq>.cpuprofile; tsx's loader thread writes one too).
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

interface CallFrame {
  readonly functionName: string;
  readonly url: string;
  readonly lineNumber: number;
}

interface ProfileNode {
  readonly id: number;
  readonly callFrame: CallFrame;
}

interface CpuProfile {
  readonly nodes: readonly ProfileNode[];
  /** Microseconds, on the clock of process.hrtime() (CLOCK_MONOTONIC on Linux). */
  readonly startTime: number;
  readonly endTime: number;
  readonly samples?: readonly number[];
  readonly timeDeltas?: readonly number[];
}

export interface SelfTime {
  readonly name: string;
  readonly location: string;
  readonly microseconds: number;
  readonly share: number;
}

export interface ProfileSummary {
  readonly totalMs: number;
  /** Share of the profile that was idle (the event loop waiting); the other shares are of busy time. */
  readonly idleShare: number;
  readonly functions: readonly SelfTime[];
  readonly groups: readonly SelfTime[];
}

/** Microseconds on the clock of process.hrtime() (the profile's own clock, on Linux). */
export interface ProfileWindow {
  readonly fromUs: number;
  readonly toUs: number;
}

/** Self time per function (samples × their time deltas), and per code location group. */
export function summarise(profile: CpuProfile, root: string, window?: ProfileWindow): ProfileSummary {
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  const perFunction = new Map<string, { name: string; location: string; us: number }>();
  const perGroup = new Map<string, number>();
  let total = 0;
  let idle = 0;
  let at = profile.startTime;
  for (let i = 0; i < samples.length; i++) {
    at += deltas[i] ?? 0;
    if (window && (at < window.fromUs || at > window.toUs)) continue;
    const node = byId.get(samples[i]!);
    // A sample's time is the delta to the next sample.
    const us = Math.max(0, deltas[i + 1] ?? 0);
    if (!node) continue;
    total += us;
    const frame = node.callFrame;
    if (frame.functionName === '(idle)') {
      idle += us;
      continue;
    }
    const location = describeLocation(frame, root);
    const key = `${frame.functionName}\u0000${location}`;
    const entry = perFunction.get(key) ?? { name: frame.functionName || '(anonymous)', location, us: 0 };
    entry.us += us;
    perFunction.set(key, entry);
    const group = groupOf(frame, root);
    perGroup.set(group, (perGroup.get(group) ?? 0) + us);
  }
  const busy = total - idle;
  const share = (us: number) => (busy === 0 ? 0 : us / busy);
  return {
    totalMs: total / 1000,
    idleShare: total === 0 ? 0 : idle / total,
    functions: [...perFunction.values()]
      .sort((a, b) => b.us - a.us)
      .map((entry) => ({ name: entry.name, location: entry.location, microseconds: entry.us, share: share(entry.us) })),
    groups: [...perGroup]
      .sort((a, b) => b[1] - a[1])
      .map(([name, us]) => ({ name, location: '', microseconds: us, share: share(us) })),
  };
}

function relativeUrl(url: string, root: string): string {
  const file = url.startsWith('file://') ? fileURLToPath(url) : url;
  return file.startsWith(root) ? path.relative(root, file) : file;
}

function describeLocation(frame: CallFrame, root: string): string {
  if (!frame.url) return '';
  return `${relativeUrl(frame.url, root)}:${frame.lineNumber + 1}`;
}

/** `src/…` by directory, a package by name, node internals, or the VM's own pseudo-frames. */
function groupOf(frame: CallFrame, root: string): string {
  if (!frame.url) return frame.functionName.startsWith('(') ? frame.functionName : '(native)';
  if (frame.url.startsWith('node:')) return 'node internals';
  const file = relativeUrl(frame.url, root);
  const packageMatch = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(file);
  if (packageMatch) return packageMatch[1]!;
  if (file.startsWith('src/')) return path.dirname(file);
  return file;
}

export function formatSummary(summary: ProfileSummary, top: number): string {
  const pct = (share: number) => `${(share * 100).toFixed(1)}%`;
  const lines = [
    `Profiled ${summary.totalMs.toFixed(0)} ms, idle ${pct(summary.idleShare)}; self-time shares below are of the busy (non-idle) time.`,
    '',
    '| # | function | self | where |',
    '| ---: | --- | ---: | --- |',
    ...summary.functions.slice(0, top).map((f, i) => `| ${i + 1} | \`${f.name}\` | ${pct(f.share)} | ${f.location || '—'} |`),
    '',
    '| code | self |',
    '| --- | ---: |',
    ...summary.groups.slice(0, top).map((g) => `| ${g.name} | ${pct(g.share)} |`),
  ];
  return lines.join('\n');
}

export function summariseFile(file: string, top: number, window?: ProfileWindow): string {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
  const span = window ? ` (samples from ${((window.fromUs - profile.startTime) / 1e6).toFixed(1)} s to ${((window.toUs - profile.startTime) / 1e6).toFixed(1)} s after the profile started)` : '';
  return `${path.relative(process.cwd(), file)}${span}\n\n${formatSummary(summarise(profile, root, window), top)}`;
}

function newestProfile(directory: string): string | undefined {
  let newest: { file: string; mtime: number } | undefined;
  let names: string[] = [];
  try {
    names = readdirSync(directory).filter((name) => name.endsWith('.cpuprofile'));
  } catch {
    return undefined;
  }
  const mainThread = names.filter((name) => /\.\d+\.0\.\d+\.cpuprofile$/.test(name));
  for (const name of mainThread.length > 0 ? mainThread : names) {
    const file = path.join(directory, name);
    const mtime = statSync(file).mtimeMs;
    if (!newest || mtime > newest.mtime) newest = { file, mtime };
  }
  return newest?.file;
}

const isMain = process.argv[1] !== undefined && fileURLToPath(import.meta.url) === path.resolve(process.argv[1]);
if (isMain) {
  const args = process.argv.slice(2);
  const flag = (name: string) => {
    const arg = args.find((a) => a.startsWith(`--${name}=`));
    return arg === undefined ? undefined : Number(arg.slice(name.length + 3));
  };
  const top = flag('top') ?? 15;
  const fromUs = flag('from-us');
  const toUs = flag('to-us');
  const window = fromUs !== undefined && toUs !== undefined ? { fromUs, toUs } : undefined;
  const resultsDir = path.join(path.dirname(fileURLToPath(import.meta.url)), 'results');
  const file = args.find((arg) => !arg.startsWith('--')) ?? newestProfile(resultsDir);
  if (!file || !(top > 0)) {
    process.stderr.write('usage: summarise-profile.ts [file.cpuprofile] [--top=N] (no .cpuprofile in bench/results/)\n');
    process.exit(2);
  }
  process.stdout.write(`${summariseFile(file, top, window)}\n`);
}

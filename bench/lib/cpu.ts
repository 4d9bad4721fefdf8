/**
 * CPU time of a process tree from /proc (Linux only; undefined elsewhere): where the machine's
 * cores went during a run — the server, PostgreSQL, and (reported by itself) the load generator.
 */
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

let ticksPerSecond: number | undefined;

function clockTicks(): number {
  if (ticksPerSecond === undefined) {
    try {
      ticksPerSecond = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8', timeout: 2000 }).trim()) || 100;
    } catch {
      ticksPerSecond = 100;
    }
  }
  return ticksPerSecond;
}

interface Stat {
  readonly ppid: number;
  /** utime + stime, in clock ticks, every thread. */
  readonly own: number;
  /** cutime + cstime: children that have exited and been waited for. */
  readonly reaped: number;
}

function readStat(pid: number): Stat | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // Fields after "(comm)": state ppid … utime(14) stime(15) cutime(16) cstime(17), 1-based overall.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  const field = (n: number) => Number(fields[n - 3] ?? 0);
  return { ppid: field(4), own: field(14) + field(15), reaped: field(16) + field(17) };
}

/** CPU milliseconds used so far by one process (all its threads). */
export function processCpuMs(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  const stat = readStat(pid);
  return stat === undefined ? undefined : (stat.own * 1000) / clockTicks();
}

/**
 * CPU milliseconds of a PostgreSQL server so far: the postmaster, its exited backends (reaped into
 * its cutime) and its live children (backends, checkpointer, WAL writer, autovacuum…).
 */
export function serverTreeCpuMs(rootPid: number | undefined): number | undefined {
  if (rootPid === undefined) return undefined;
  const root = readStat(rootPid);
  if (!root) return undefined;
  let ticks = root.own + root.reaped;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = readStat(Number(entry));
    if (stat?.ppid === rootPid) ticks += stat.own;
  }
  return (ticks * 1000) / clockTicks();
}

/** CPU milliseconds all cores have spent busy so far (not idle, not waiting for I/O), machine-wide. */
export function machineBusyMs(): number | undefined {
  let line: string | undefined;
  try {
    line = readFileSync('/proc/stat', 'utf8').split('\n')[0];
  } catch {
    return undefined;
  }
  if (!line?.startsWith('cpu ')) return undefined;
  // cpu user nice system idle iowait irq softirq steal guest guest_nice (guest time is inside user)
  const [user, nice, system, , , irq, softirq, steal] = line.trim().split(/\s+/).slice(1).map(Number);
  const busy = (user ?? 0) + (nice ?? 0) + (system ?? 0) + (irq ?? 0) + (softirq ?? 0) + (steal ?? 0);
  return (busy * 1000) / clockTicks();
}

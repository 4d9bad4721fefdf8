/**
 * `npm run chaos [-- --only=partition,reset] [--short] [--rate=N] [--soak [--soak-minutes=20]]`
 *
 * Every fault we can make on one machine, each under load with the obligation ledger, and a table
 * at the end (see chaos/chaos.ts). Loopback only; every process it starts (a PostgreSQL server of
 * its own, the service, the load) stops with it. Exit 0 when every scenario passed, 1 otherwise.
 * `--soak` runs the 20-minute soak instead of the scenarios (at half of the measured peak, or `--rate`).
 */
import { parseArgs } from 'node:util';
import { cpus, totalmem } from 'node:os';
import { runChaos, withServer } from './chaos.ts';
import { resultTable } from './lib/report.ts';
import { runSoak } from './lib/soak.ts';
import { killAllServices } from './lib/service-process.ts';

const { values } = parseArgs({
  options: {
    only: { type: 'string' },
    short: { type: 'boolean', default: false },
    rate: { type: 'string' },
    soak: { type: 'boolean', default: false },
    'soak-minutes': { type: 'string', default: '20' },
  },
});

const log = (line: string) => process.stderr.write(`[chaos ${new Date().toISOString().slice(11, 19)}] ${line}\n`);
const options = {
  eventsPerSecond: Number(values.rate ?? (values.short ? 300 : 1000)),
  bulk: 10,
  connections: 8,
  short: values.short,
  log,
  ...(values.only ? { only: values.only.split(',') } : {}),
  ...(process.env.DATABASE_URL ? { databaseUrl: process.env.DATABASE_URL } : {}),
};

const hardStop = setTimeout(() => {
  log('the run passed its hard limit (2 h); stopping');
  killAllServices();
  process.exit(1);
}, 2 * 3_600_000);
hardStop.unref();
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    killAllServices();
    process.exit(130);
  });
}

const cpu = cpus()[0]?.model ?? 'unknown CPU';
log(`${cpu}, ${cpus().length} cores, ${(totalmem() / 2 ** 30).toFixed(1)} GiB; Node ${process.version}; ${options.eventsPerSecond} events/s in bulks of ${options.bulk} over ${options.connections} connections`);

let passed: boolean;
if (values.soak) {
  const minutes = Number(values['soak-minutes']);
  const rate = values.rate === undefined ? undefined : Number(values.rate);
  const { result } = await withServer(options.databaseUrl, (server) => runSoak(server, options, minutes, rate));
  process.stdout.write(`${resultTable([result])}\n`);
  passed = result.problems.length === 0;
} else {
  const results = await runChaos(options);
  process.stdout.write(`${resultTable(results)}\n`);
  passed = results.every((r) => r.problems.length === 0);
}
killAllServices();
process.exit(passed ? 0 : 1);

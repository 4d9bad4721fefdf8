import { runPaced } from './bench/lib/paced.ts';
import { makeBodies } from './bench/lib/event-body.ts';
const [url, rate, secs, conns, maxc] = process.argv.slice(2);
const r = await runPaced({ url: url!, ratePerSecond: Number(rate), durationSeconds: Number(secs), connections: Number(conns), maxConnections: Number(maxc), bodies: makeBodies(256), timeoutMs: 10000, warmupSeconds: 2 });
const l = r.latenciesMs; const per = Math.round(Number(rate) / 10);
const sorted = l.slice().sort();
console.log('p50', sorted[Math.floor(sorted.length*0.5)]!.toFixed(2), 'p99', sorted[Math.floor(sorted.length*0.99)]!.toFixed(2), 'max', sorted.at(-1)!.toFixed(1), 'conns', r.connectionsOpened, 'lag', r.sendLagP99Ms.toFixed(1));
const slots: string[] = [];
for (let i = 0; i < l.length; i += per) { let m = 0; let over = 0; for (let j = i; j < Math.min(l.length, i + per); j++) { m = Math.max(m, l[j]!); if (l[j]! > 10) over++; } slots.push(`${(i/Number(rate)).toFixed(1)}s:${m.toFixed(0)}/${over}`); }
console.log(slots.filter(s => !/:\d\/0$/.test(s)).join(' '));

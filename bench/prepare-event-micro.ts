/**
 * A quick micro-benchmark of the per-event hot path of POST /event: the body bytes checked as UTF-8
 * and parsed (numbers kept exact), then prepareEvent (validate, stamp, encode the COPY row), over a
 * few thousand typical events; and the same for events whose metadata holds a number a double
 * would change (the exact, slower path). Prints the median of several rounds, µs per event.
 *   node --import tsx bench/prepare-event-micro.ts
 */
import { performance } from 'node:perf_hooks';
import { parseExactJson } from '../src/event/exact-json.ts';
import { bodyText } from '../src/http/body-text.ts';
import { prepareEvent } from '../src/http/prepare-event.ts';

const EVENTS = 5000;
const ROUNDS = 15;

function bodies(extraMetadata: string): Buffer[] {
  return Array.from({ length: EVENTS }, (_, i) =>
    Buffer.from(
      JSON.stringify({
        id: `0193a4c2-7b1e-7c3a-9f00-${String(i).padStart(12, '0')}`,
        tenant: 'acme',
        occurred_at: '2026-11-22T05:00:00.000Z',
        action: 'document.update',
        actor: { id: `user:${i}`, type: 'user', name: 'Ada' },
        target: { id: 'doc:9', type: 'document', name: 'Q3 plan' },
        outcome: 'success',
        source_ip: '203.0.113.7',
        user_agent: 'billing-service/2.3',
        metadata: { request_id: `r-${i}`, attempt: i % 5, ratio: 0.25, tags: ['a', 'b'], nested: { ok: true, n: null }, extra: '@X@' },
      }).replace('"@X@"', extraMetadata),
    ),
  );
}

function measure(name: string, input: readonly Buffer[]): void {
  const receivedAt = new Date().toISOString();
  const round = (): number => {
    const start = performance.now();
    for (const body of input) {
      const result = prepareEvent(parseExactJson(bodyText(body, 'application/json')), receivedAt);
      if (!result.ok) throw new Error(JSON.stringify(result.issues));
    }
    return ((performance.now() - start) * 1000) / EVENTS;
  };
  const times = Array.from({ length: ROUNDS }, round).sort((a, b) => a - b);
  console.log(`${name}: median ${times[Math.floor(ROUNDS / 2)]!.toFixed(2)} µs/event, best ${times[0]!.toFixed(2)} µs/event (${EVENTS} events x ${ROUNDS} rounds)`);
}

measure('typical events', bodies('7'));
measure('metadata with 12345678901234567890', bodies('12345678901234567890'));

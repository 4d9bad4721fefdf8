import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { createScratchStream, jetStreamSkip, readAllMessages } from '../helpers/jetstream.ts';
import { startServerProcess, type ServerProcess } from '../helpers/server-process.ts';
import { sampleEvent, waitFor } from '../helpers/service.ts';

const skip = await jetStreamSkip('jetstream-edge-crash');

async function metric(origin: string, series: string): Promise<number> {
  const text = await (await fetch(`${origin}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return Number(line?.split(' ')[1] ?? NaN);
}

describe('SINK=jetstream: SIGKILL of the edge while it publishes', { skip }, () => {
  let db: TestDatabase;
  before(async () => {
    db = await createTestDatabase();
  });
  after(async () => {
    await db?.drop();
  });

  it('every 202 reaches the stream exactly once: the restart replays the write-ahead log segments, the Nats-Msg-Id window drops what had been published', async () => {
    const stream = await createScratchStream();
    const dataDir = path.join(tmpdir(), `edge-crash-${randomUUID()}`);
    const environment = { ...stream.environment, DATABASE_URL: db.url, DATA_DIR: dataDir, BATCH_MAX_SIZE: '200' };
    let server: ServerProcess | undefined = await startServerProcess(environment);
    const acknowledged = new Set<string>();
    try {
      const origin = server.origin;
      let stop = false;
      const client = async () => {
        while (!stop) {
          const events = Array.from({ length: 100 }, () => sampleEvent({ id: randomUUID() }));
          const response = await fetch(`${origin}/events`, {
            method: 'POST',
            headers: { 'content-type': 'application/x-ndjson' },
            body: events.map((event) => JSON.stringify(event)).join('\n'),
          }).catch(() => undefined);
          if (response?.status !== 202) continue;
          const body = (await response.json().catch(() => ({ accepted: [] }))) as { accepted: { id: string }[] };
          for (const { id } of body.accepted) acknowledged.add(`acme/${id}`);
        }
      };
      const clients = Array.from({ length: 4 }, client);
      await waitFor(async () => acknowledged.size >= 5_000 && (await stream.messageCount()) > 0, 15_000, '5,000 acknowledged events');
      server.child.kill('SIGKILL');
      await server.exited;
      stop = true;
      await Promise.all(clients);
      const inStreamAtKill = await stream.messageCount();
      process.stderr.write(`SIGKILL with ${acknowledged.size} acknowledged, ${inStreamAtKill} in the stream\n`);

      server = await startServerProcess(environment);
      // Every replayed event settled, not only out of the queue: a batch being published is no
      // longer counted in ingest_queue_depth.
      const settledAll = async () => {
        const origin = server!.origin;
        const [replayed, ...settled] = await Promise.all(
          ['ingest_wal_replayed_total', 'ingest_events_stored_total', 'ingest_events_duplicate_total', 'ingest_events_dead_lettered_total'].map((series) => metric(origin, series)),
        );
        return (await metric(origin, 'ingest_queue_depth')) === 0 && settled.reduce((sum, n) => sum + n, 0) >= replayed!;
      };
      await waitFor(settledAll, 15_000, 'the replay to reach the stream');
      const replayedDuplicates = await metric(server.origin, 'ingest_events_duplicate_total');
      process.stderr.write(`after the restart: ${replayedDuplicates} replayed events were already in the stream (answered as duplicates)\n`);
      const ids = (await readAllMessages(stream)).map((message) => message.headers?.get('Nats-Msg-Id') ?? '');
      assert.equal(new Set(ids).size, ids.length, 'no event twice in the stream');
      const missing = [...acknowledged].filter((id) => !ids.includes(id));
      assert.deepEqual(missing.slice(0, 5), [], `${missing.length} acknowledged events missing from the stream`);
    } finally {
      server?.child.kill('SIGKILL');
      await stream.remove();
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});

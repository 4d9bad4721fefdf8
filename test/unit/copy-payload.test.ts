import assert from 'node:assert/strict';
import { test } from 'node:test';
import { COPY_CHUNK_MAX_BYTES, copyPayload } from '../../src/sink/copy-payload.ts';
import { queuedEvent } from '../helpers/events.ts';

test('a batch of 500 events becomes chunks under the cap that hold its rows as UTF-8, never splitting a row', () => {
  const batch = Array.from({ length: 500 }, (_, i) => queuedEvent({ action: `document.update.${i}`, metadata: { note: 'naïve café ☕' } }));
  const chunks = copyPayload(batch);
  assert.equal(Buffer.concat(chunks).toString('utf8'), batch.map((event) => event.row).join(''));
  assert.ok(chunks.length > 1, 'a batch of that size is more than one chunk');
  for (const chunk of chunks) {
    assert.ok(chunk.length <= COPY_CHUNK_MAX_BYTES, `chunk of ${chunk.length} bytes`);
    assert.equal(chunk.at(-1), 0x0a, 'a chunk ends at the end of a row');
  }
});

test('a row longer than the cap is a chunk of its own, and one event is one chunk', () => {
  // Longer than the schema lets an event be: copyPayload only reads the rows and their byte lengths.
  const row = `${'x'.repeat(COPY_CHUNK_MAX_BYTES)}\n`;
  const long = { ...queuedEvent(), row, bytes: Buffer.byteLength(row) };
  const [before, after] = [queuedEvent(), queuedEvent()];
  assert.deepEqual(
    copyPayload([before, long, after]).map((chunk) => chunk.toString('utf8')),
    [before.row, long.row, after.row],
  );
  assert.deepEqual(copyPayload([before]).map((chunk) => chunk.toString('utf8')), [before.row]);
});

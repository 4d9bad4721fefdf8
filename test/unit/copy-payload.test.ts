import assert from 'node:assert/strict';
import { test } from 'node:test';
import { COPY_CHUNK_MAX_CHARS, copyPayload } from '../../src/sink/copy-payload.ts';
import { queuedEvent } from '../helpers/events.ts';

test('a batch of 500 events becomes chunks under the cap that join to its rows, never splitting a row', () => {
  const batch = Array.from({ length: 500 }, (_, i) => queuedEvent({ action: `document.update.${i}` }));
  const chunks = copyPayload(batch);
  assert.equal(chunks.join(''), batch.map((event) => event.row).join(''));
  assert.ok(chunks.length > 1, `a batch of ${chunks.join('').length} characters is more than one chunk`);
  for (const chunk of chunks) {
    assert.ok(chunk.length <= COPY_CHUNK_MAX_CHARS, `chunk of ${chunk.length} characters`);
    assert.ok(chunk.endsWith('\n'), 'a chunk ends at the end of a row');
  }
});

test('a row longer than the cap is a chunk of its own, and one event is its row', () => {
  // Longer than the schema lets an event be: copyPayload only reads the rows.
  const long = { ...queuedEvent(), row: `${'x'.repeat(COPY_CHUNK_MAX_CHARS)}\n` };
  const [before, after] = [queuedEvent(), queuedEvent()];
  const chunks = copyPayload([before, long, after]);
  assert.deepEqual(chunks, [before.row, long.row, after.row]);
  assert.deepEqual(copyPayload([before]), [before.row]);
});

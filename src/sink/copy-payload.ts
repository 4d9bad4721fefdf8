import type { QueuedEvent } from '../event/queued-event.ts';

/**
 * The most characters one chunk of a COPY payload holds: 48 Ki characters is at most 96 KiB of
 * heap even as a two-byte string, under V8's largest regular object (128 KiB on 64-bit). One
 * string for a whole batch (500 rows of ~300 bytes, ~150 KB) would go to the large-object space,
 * which only a full mark-compact frees: a batch a few times a second made the old generation grow
 * by megabytes a second and brought a mark-compact every ~2.7 s at 5,200 events/s, stalling
 * every request for 25–40 ms (bench: README "Seventh look"). Chunks of this size die young.
 */
export const COPY_CHUNK_MAX_CHARS = 48 * 1024;

/** A batch's COPY rows, joined into chunks of at most COPY_CHUNK_MAX_CHARS (a row is never split). */
export function copyPayload(batch: readonly QueuedEvent[]): string[] {
  if (batch.length === 1) return [batch[0]!.row];
  const chunks: string[] = [];
  // Array.prototype.join makes one flat string; `+=` would make a rope, flattened (copied again)
  // when it is written.
  const rows: string[] = [];
  let length = 0;
  for (const event of batch) {
    if (length > 0 && length + event.row.length > COPY_CHUNK_MAX_CHARS) {
      chunks.push(rows.join(''));
      rows.length = 0;
      length = 0;
    }
    rows.push(event.row);
    length += event.row.length;
  }
  chunks.push(rows.length === 1 ? rows[0]! : rows.join(''));
  return chunks;
}

import type { QueuedEvent } from '../event/queued-event.ts';

/** The most bytes one chunk of a COPY payload holds (a row longer than this is a chunk of its own). */
export const COPY_CHUNK_MAX_BYTES = 64 * 1024;

/**
 * A batch's COPY rows as UTF-8 chunks of at most COPY_CHUNK_MAX_BYTES, a row never split, each
 * row encoded straight into its chunk's Buffer. No string of the batch (or of a chunk) is built:
 * one string of the whole batch (~150 KB for 500 rows) went to V8's large-object space, which only
 * a full mark-compact frees, and brought one every ~2.7 s at 5,200 events/s, each stalling every
 * request for 25-40 ms (README "Seventh look"); a Buffer's bytes live outside the JS heap.
 */
export function copyPayload(batch: readonly QueuedEvent[]): Buffer[] {
  const chunks: Buffer[] = [];
  let start = 0;
  while (start < batch.length) {
    let end = start;
    let bytes = 0;
    while (end < batch.length && (end === start || bytes + batch[end]!.bytes <= COPY_CHUNK_MAX_BYTES)) bytes += batch[end++]!.bytes;
    const chunk = Buffer.allocUnsafeSlow(bytes);
    let offset = 0;
    for (let i = start; i < end; i++) offset += chunk.write(batch[i]!.row, offset, 'utf8');
    chunks.push(chunk);
    start = end;
  }
  return chunks;
}

/** One request's share of a batch: the batch indexes it carries and its NDJSON body (uncompressed). */
export interface ForwardChunk {
  readonly indexes: readonly number[];
  readonly body: string;
  /** UTF-8 bytes of `body`, what the receiver's BULK_BODY_LIMIT_BYTES is checked against. */
  readonly bytes: number;
}

/**
 * Cut a batch's NDJSON lines into request bodies of at most `maxEvents` lines and `maxBytes`
 * bytes (the receiver's BULK_MAX_EVENTS and BULK_BODY_LIMIT_BYTES apply to the decompressed body).
 * A line larger than `maxBytes` on its own goes alone: the receiver refuses it (413) and the chain
 * isolates and dead-letters it, rather than this function dropping it.
 */
export function chunkLines(lines: readonly string[], limits: { maxEvents: number; maxBytes: number }): ForwardChunk[] {
  const chunks: ForwardChunk[] = [];
  let indexes: number[] = [];
  let parts: string[] = [];
  let bytes = 0;
  const close = () => {
    if (indexes.length > 0) chunks.push({ indexes, body: parts.join(''), bytes });
    indexes = [];
    parts = [];
    bytes = 0;
  };
  lines.forEach((line, index) => {
    const lineBytes = Buffer.byteLength(line) + 1; // and its newline
    if (indexes.length >= limits.maxEvents || (indexes.length > 0 && bytes + lineBytes > limits.maxBytes)) close();
    indexes.push(index);
    parts.push(line, '\n');
    bytes += lineBytes;
  });
  close();
  return chunks;
}

import { z } from 'zod';
import type { QueuedEvent } from '../event/queued-event.ts';
import { chunkLines, type ForwardChunk } from '../forward/chunks.ts';
import { errorOfStatus, ForwardSinkError } from '../forward/errors.ts';
import type { ForwardAnswer, ForwardClient } from '../forward/forward-client.ts';
import { ndjsonLineOfRow } from '../forward/ndjson-line.ts';
import type { DeadLetterWriter } from './poison-splitting-sink.ts';
import type { Sink, WriteResult } from './sink.ts';

const issueSchema = z.object({ path: z.string(), message: z.string() });
type Issue = z.output<typeof issueSchema>;

/** The parts of a receiver's bulk answer this sink reads (src/http/bulk-route.ts); anything else is ignored. */
const bulkAnswerSchema = z.object({
  accepted: z.array(z.object({ index: z.number().int().min(0), outcome: z.string().optional() })),
  rejected: z.array(z.object({ index: z.number().int().min(0), errors: z.array(issueSchema).optional() })).default([]),
});
/** The parts of a problem document this sink reads (src/http/problem.ts). */
const problemSchema = z.object({ code: z.string().optional(), detail: z.string().optional(), errors: z.array(issueSchema).optional() });

/**
 * Forwards a batch to another instance of this service (SINK=http): the batch's events, rebuilt as
 * NDJSON from their rows, go out as POST /events requests of at most `maxEvents` events and
 * `maxBytes` bytes each (the receiver's bulk limits), one after another, gzip-compressed. The
 * write settles when every request was answered 2xx:
 *  - 202 (receiver ACK_MODE=queued): the receiver has the events in its write-ahead log;
 *  - 201/207 (ACK_MODE=committed): each accepted event's outcome; `stored` is stored, `rejected`
 *    means the receiver dead-lettered it itself; anything else fails the write (transient).
 * Lines the receiver refuses for their content (its `rejected` list, or a 400 whose issues name
 * every line) are dead-lettered here with the receiver's reasons and returned as `deadLettered`.
 * Any other failure throws (errors.ts says which are transient); a retry re-sends the whole batch
 * with the same ids, and the receiver's primary key stores each once.
 */
export class HttpForwardSink implements Sink {
  readonly #client: ForwardClient;
  readonly #limits: { maxEvents: number; maxBytes: number };
  readonly #deadLetter: DeadLetterWriter;

  constructor(client: ForwardClient, options: { maxEvents: number; maxBytes: number; deadLetter: DeadLetterWriter }) {
    this.#client = client;
    this.#limits = { maxEvents: options.maxEvents, maxBytes: options.maxBytes };
    this.#deadLetter = options.deadLetter;
  }

  async write(batch: readonly QueuedEvent[], { signal }: { signal: AbortSignal }): Promise<WriteResult> {
    signal.throwIfAborted();
    const chunks = chunkLines(batch.map((event) => ndjsonLineOfRow(event.row)), this.#limits);
    let inserted = 0;
    const refused = new Map<number, string>();
    for (const chunk of chunks) {
      const answer = await this.#client.postEvents(chunk.body, signal);
      inserted += await this.#settle(chunk, answer, refused, signal);
    }
    if (refused.size === 0) return { inserted, deadLettered: [] };
    const deadLettered = [...refused.keys()].sort((a, b) => a - b);
    // One durable append per distinct reason, not per event (a bulk refused line by line for the
    // same cause is one write).
    const byReason = new Map<string, QueuedEvent[]>();
    for (const index of deadLettered) {
      const reason = refused.get(index)!;
      byReason.set(reason, [...(byReason.get(reason) ?? []), batch[index]!]);
    }
    for (const [reason, events] of byReason) {
      await this.#deadLetter.write(events, new ForwardSinkError('FORWARD_ERR_EVENT_REFUSED', `the receiver refused the event: ${reason}`), 1, signal);
    }
    return { inserted, deadLettered };
  }

  /** How many events of `chunk` the receiver took; its refusals are added to `refused` (by batch index). */
  async #settle(chunk: ForwardChunk, answer: ForwardAnswer, refused: Map<number, string>, signal: AbortSignal): Promise<number> {
    const problem = problemSchema.safeParse(answer.body).data;
    const failure = errorOfStatus(answer.statusCode, problem?.detail ?? '');
    if (failure) {
      const everyLine = failure.code === 'FORWARD_ERR_REFUSED' && problem?.code === 'INGEST_ERR_VALIDATION' ? issuesByLine(problem.errors, chunk.indexes.length) : undefined;
      if (everyLine) {
        for (const [line, reason] of everyLine) refused.set(chunk.indexes[line]!, reason);
        return 0;
      }
      if (answer.retryAfterMs !== undefined && (answer.statusCode === 429 || answer.statusCode === 503)) {
        await this.#client.waitRetryAfter(answer.retryAfterMs, signal);
        // Waited: the retry layer then retries at once instead of adding its backoff to it.
        throw new ForwardSinkError(failure.forwardCode, failure.message, { statusCode: failure.statusCode, retryAfterWaited: true });
      }
      throw failure;
    }
    const body = bulkAnswerSchema.safeParse(answer.body).data;
    // Every line sent must be answered for, or some event's outcome is unknown: treated as no bulk answer (retried).
    if (body === undefined || body.accepted.length + body.rejected.length !== chunk.indexes.length || body.rejected.some((line) => line.index >= chunk.indexes.length)) {
      throw new ForwardSinkError('FORWARD_ERR_UNAVAILABLE', `the receiver answered ${answer.statusCode} without a bulk answer: is FORWARD_URL an instance of this service?`, { statusCode: answer.statusCode });
    }
    for (const line of body.rejected) refused.set(chunk.indexes[line.index]!, describeIssues(line.errors));
    let taken = 0;
    for (const item of body.accepted) {
      if (item.outcome === undefined || item.outcome === 'stored') taken += 1;
      else if (item.outcome !== 'rejected') {
        throw new ForwardSinkError('FORWARD_ERR_UNAVAILABLE', `the receiver accepted but did not store event ${item.index} of a request (${item.outcome})`, { statusCode: answer.statusCode });
      }
    }
    return taken;
  }
}

/**
 * A 400 INGEST_ERR_VALIDATION refuses a bulk only when no line was valid: its issues are paths
 * `[line].field`. The reasons by line when they name every line of the request, else undefined
 * (a refusal of the request itself: the chain splits it).
 */
function issuesByLine(issues: readonly Issue[] | undefined, lines: number): Map<number, string> | undefined {
  if (issues === undefined) return undefined;
  const byLine = new Map<number, Issue[]>();
  for (const issue of issues) {
    const match = /^\[(\d+)\]\.?(.*)$/.exec(issue.path);
    if (!match) return undefined;
    const line = Number(match[1]);
    if (line >= lines) return undefined;
    byLine.set(line, [...(byLine.get(line) ?? []), { path: match[2] ?? '', message: issue.message }]);
  }
  // The receiver lists at most 100 issues: a larger request whose lines are not all named is split.
  if (byLine.size !== lines) return undefined;
  return new Map([...byLine].map(([line, list]) => [line, describeIssues(list)]));
}

function describeIssues(issues: readonly Issue[] | undefined): string {
  if (issues === undefined || issues.length === 0) return 'no reason given';
  return issues.map((issue) => `${issue.path}: ${issue.message}`).join('; ');
}

import { isUtf8 } from 'node:buffer';
import type { FastifyRequest } from 'fastify';
import { safeParse as parseContentType } from 'fast-content-type-parse';
import { IngestError } from '../errors.ts';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Set on bulk routes: the body is a list of at most this many events (BULK_MAX_EVENTS). */
    bulkMaxEvents?: number;
  }
}

/** The event limit of a bulk route, or undefined on a single-event route. */
export function bulkMaxEventsOf(request: FastifyRequest): number | undefined {
  return request.routeOptions.config.bulkMaxEvents;
}

/** A parse failure as the IngestError to answer: our own errors pass, JSON syntax errors are 400. */
export function bodyParseError(error: unknown): IngestError {
  if (error instanceof IngestError) return error;
  const message = error instanceof Error ? error.message : String(error);
  const code = /prototype property/.test(message) ? 'INGEST_ERR_FORBIDDEN_KEY' : 'INGEST_ERR_MALFORMED_JSON';
  return new IngestError(code, message, { cause: error });
}

/**
 * The text of a request body, or why there is none: bodies are UTF-8 (RFC 8259), so a declared
 * charset other than UTF-8 is refused with 415 and bytes that are not well-formed UTF-8 with 400,
 * instead of being "repaired" into U+FFFD and stored changed.
 */
export function bodyText(body: Buffer, contentType: string | undefined): string {
  // The common header has no parameter: nothing to parse.
  const charset = contentType === 'application/json' || contentType === 'application/x-ndjson' ? undefined : parseContentType(contentType ?? '').parameters.charset;
  if (charset !== undefined && charset.toLowerCase() !== 'utf-8') {
    throw new IngestError('INGEST_ERR_UNSUPPORTED_CHARSET', `charset=${charset} is not supported; send UTF-8 (charset=utf-8, or no charset)`);
  }
  // Rejects overlong forms (C0 80), surrogates (CESU-8), 5- and 6-byte forms, stray and truncated sequences.
  if (!isUtf8(body)) {
    throw new IngestError('INGEST_ERR_BAD_UTF8', `the body is not valid UTF-8 (at or after byte ${firstInvalidByte(body)}); send it UTF-8 encoded`);
  }
  return body.toString('utf8');
}

/** The length of the longest prefix that is valid UTF-8 (ending mid-character allowed): where the first bad byte is. */
function firstInvalidByte(body: Buffer): number {
  let low = 0;
  let high = body.length;
  while (low < high) {
    const middle = Math.ceil((low + high) / 2);
    if (decodesAsPrefix(body.subarray(0, middle))) low = middle;
    else high = middle - 1;
  }
  return low;
}

function decodesAsPrefix(bytes: Buffer): boolean {
  try {
    new TextDecoder('utf-8', { fatal: true }).decode(bytes, { stream: true });
    return true;
  } catch {
    return false;
  }
}

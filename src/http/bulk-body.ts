import type { FastifyInstance } from 'fastify';
import { IngestError } from '../errors.ts';
import { endOfString, keepExactNumbers, mayLoseDigits, parseJsonSecurely } from '../event/exact-json.ts';
import { bodyParseError, bodyText, bulkMaxEventsOf } from './body-text.ts';

export const NDJSON_CONTENT_TYPE = 'application/x-ndjson';

/** One line of a bulk body: a parsed value, or why the line is not JSON. */
export type BulkLine = { readonly value: unknown } | { readonly parseError: string };

/**
 * The body of a bulk request as the body parsers hand it to the route. A class, so that no JSON a
 * client sends can pass for it (a plain `{ "lines": ... }` object is not a BulkBody).
 */
export class BulkBody {
  readonly lines: readonly BulkLine[];
  constructor(lines: readonly BulkLine[]) {
    this.lines = lines;
  }
}

function tooManyEvents(maxEvents: number): IngestError {
  return new IngestError('INGEST_ERR_TOO_MANY_EVENTS', `more than ${maxEvents} events in one request (BULK_MAX_EVENTS); split it`);
}

const NOT_BLANK = /[^ \t\r\n]/g;

/**
 * The [start, end) bounds of the non-blank lines of an NDJSON text, found before any line is
 * parsed: a body of more than `maxEvents` lines is refused after looking at `maxEvents + 1` of
 * them, whatever its size. Runs of blank lines are skipped in one native regex step.
 */
function ndjsonLineBounds(text: string, maxEvents: number): number[] {
  const bounds: number[] = [];
  NOT_BLANK.lastIndex = 0;
  while (NOT_BLANK.test(text)) {
    const start = text.lastIndexOf('\n', NOT_BLANK.lastIndex - 1) + 1;
    const newline = text.indexOf('\n', NOT_BLANK.lastIndex);
    const end = newline === -1 ? text.length : newline;
    if (bounds.length === maxEvents * 2) throw tooManyEvents(maxEvents);
    bounds.push(start, text.charCodeAt(end - 1) === 0x0d ? end - 1 : end);
    if (newline === -1) break;
    NOT_BLANK.lastIndex = newline + 1;
  }
  return bounds;
}

/** One NDJSON line parsed on its own; a syntax error is the line's, not the request's. */
function parseLine(line: string): BulkLine {
  try {
    return { value: keepExactNumbers(line, parseJsonSecurely(line)) };
  } catch (error) {
    return { parseError: error instanceof Error ? error.message : String(error) };
  }
}

/**
 * application/x-ndjson: one JSON value per line, each parsed on its own (with secure-json-parse,
 * numbers kept exact), so one malformed line is reported by its index without failing the others.
 * Blank lines are skipped; CRLF line ends are accepted. Lines are counted before any is parsed.
 */
export function parseNdjsonBulk(text: string, maxEvents: number): BulkBody {
  const bounds = ndjsonLineBounds(text, maxEvents);
  const lines: BulkLine[] = [];
  for (let i = 0; i < bounds.length; i += 2) lines.push(parseLine(text.slice(bounds[i], bounds[i + 1])));
  return new BulkBody(lines);
}

/**
 * Where the elements of a top-level JSON array start (after `[` or a comma at depth 1), with the
 * index of the closing bracket last; throws 413 once the array holds more than `maxEvents`.
 * Linear, no recursion, strings skipped (endOfString). Only meaningful for text JSON.parse accepts.
 */
function arrayElementBounds(text: string, maxEvents: number): number[] {
  const bounds: number[] = [];
  if (text.trimStart().charCodeAt(0) !== 0x5b) return bounds; // not an array: refused once parsed
  let depth = 0;
  for (let i = 0; i < text.length; i++) {
    const ch = text.charCodeAt(i);
    if (ch === 0x22) {
      i = endOfString(text, i + 1) - 1;
    } else if (ch === 0x7b || ch === 0x5b) {
      if (++depth === 1) bounds.push(i + 1);
    } else if (ch === 0x7d || ch === 0x5d) {
      if (--depth === 0) {
        bounds.push(i);
        break;
      }
    } else if (ch === 0x2c && depth === 1) {
      if (bounds.length >= maxEvents) throw tooManyEvents(maxEvents); // this comma starts element maxEvents + 1
      bounds.push(i + 1);
    }
  }
  return bounds;
}

/**
 * A JSON body on a bulk route: an array of events, its top-level elements counted before it is
 * parsed (a 4 MB array of a million `{}` is refused at once, not parsed). Elements whose text holds
 * numbers a double would change are parsed again exactly, on their own.
 */
export function parseJsonArrayBulk(text: string, maxEvents: number): BulkBody {
  const bounds = arrayElementBounds(text, maxEvents);
  const parsed = parseJsonSecurely(text);
  if (!Array.isArray(parsed)) {
    throw new IngestError('INGEST_ERR_VALIDATION', 'the body must be a JSON array of events or NDJSON', { issues: [{ path: '(body)', message: 'must be an array of events' }] });
  }
  if (parsed.length > maxEvents) throw tooManyEvents(maxEvents);
  // The whole text is valid JSON here, so one scan tells whether any element needs the exact parse.
  const exact = mayLoseDigits(text);
  return new BulkBody(
    parsed.map((value: unknown, index) => {
      if (!exact) return { value };
      const element = text.slice(bounds[index], bounds[index + 1]! - (index + 1 < parsed.length ? 1 : 0));
      return { value: keepExactNumbers(element, value) };
    }),
  );
}

/** Registers the NDJSON parser; only bulk routes accept it (elsewhere: 415). */
export function registerNdjsonBodyParser(app: FastifyInstance): void {
  app.addContentTypeParser(NDJSON_CONTENT_TYPE, { parseAs: 'buffer' }, (request, body, done) => {
    try {
      const maxEvents = bulkMaxEventsOf(request);
      if (maxEvents === undefined) {
        throw new IngestError('INGEST_ERR_UNSUPPORTED_MEDIA_TYPE', `${NDJSON_CONTENT_TYPE} is accepted by POST /events only; send one event as application/json`);
      }
      done(null, parseNdjsonBulk(bodyText(body as Buffer, request.headers['content-type']), maxEvents));
    } catch (error) {
      done(bodyParseError(error), undefined);
    }
  });
}

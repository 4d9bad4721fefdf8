import type { FastifyInstance } from 'fastify';
import secureJson from 'secure-json-parse';

export const NDJSON_CONTENT_TYPE = 'application/x-ndjson';

/** One line of a bulk body: a parsed value, or why the line is not JSON. */
export type BulkLine = { readonly value: unknown } | { readonly parseError: string };

/** The body of a bulk request, as fastify hands it to the route. */
export interface NdjsonBody {
  readonly ndjson: readonly BulkLine[];
}

/**
 * application/x-ndjson: one JSON value per line, each parsed on its own (with secure-json-parse),
 * so one malformed line is reported by its index without failing the others. Blank lines are
 * skipped; CRLF line ends are accepted.
 */
export function registerNdjsonBodyParser(app: FastifyInstance): void {
  app.addContentTypeParser(NDJSON_CONTENT_TYPE, { parseAs: 'string' }, (_request, body, done) => {
    const lines: BulkLine[] = [];
    for (const raw of (body as string).split('\n')) {
      const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
      if (line.trim().length === 0) continue;
      try {
        lines.push({ value: secureJson.parse(line, undefined, { protoAction: 'error', constructorAction: 'error' }) });
      } catch (error) {
        lines.push({ parseError: error instanceof Error ? error.message : String(error) });
      }
    }
    const parsed: NdjsonBody = { ndjson: lines };
    done(null, parsed);
  });
}

/** The lines of a bulk body: NDJSON lines, or the elements of a JSON array. Undefined if neither. */
export function bulkLines(body: unknown): readonly BulkLine[] | undefined {
  if (Array.isArray(body)) return body.map((value: unknown) => ({ value }));
  if (body !== null && typeof body === 'object' && 'ndjson' in body) return (body as NdjsonBody).ndjson;
  return undefined;
}

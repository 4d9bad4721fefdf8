import type { FastifyInstance } from 'fastify';
import secureJson from 'secure-json-parse';
import { IngestError } from '../errors.ts';

/**
 * The only body parser: application/json, parsed with secure-json-parse so that `__proto__` and
 * `constructor.prototype` keys are refused with their own code instead of polluting objects.
 * Every other content type falls through to fastify's 415.
 */
export function registerJsonBodyParser(app: FastifyInstance): void {
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (_request, body, done) => {
    const text = body as string;
    if (text.length === 0) {
      done(new IngestError('INGEST_ERR_MALFORMED_JSON', 'the body is empty'), undefined);
      return;
    }
    try {
      done(null, secureJson.parse(text, undefined, { protoAction: 'error', constructorAction: 'error' }));
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      const code = /prototype property/.test(message) ? 'INGEST_ERR_FORBIDDEN_KEY' : 'INGEST_ERR_MALFORMED_JSON';
      done(new IngestError(code, message, { cause: error }), undefined);
    }
  });
}

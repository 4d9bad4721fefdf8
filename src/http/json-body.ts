import type { FastifyInstance } from 'fastify';
import { IngestError } from '../errors.ts';
import { parseExactJson } from '../event/exact-json.ts';
import { bodyParseError, bodyText, bulkMaxEventsOf } from './body-text.ts';
import { parseJsonArrayBulk } from './bulk-body.ts';

/**
 * The JSON body parser: the raw bytes must be UTF-8 (body-text.ts), then the text is parsed with
 * secure-json-parse, so that `__proto__` and `constructor.prototype` keys are refused with their
 * own code instead of polluting objects, keeping numbers' digits (exact-json.ts). On a bulk route
 * the body must be an array, counted before it is parsed (bulk-body.ts). Every other content type
 * falls through to fastify's 415.
 */
export function registerJsonBodyParser(app: FastifyInstance): void {
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (request, body, done) => {
    try {
      const text = bodyText(body as Buffer, request.headers['content-type']);
      if (text.length === 0) throw new IngestError('INGEST_ERR_MALFORMED_JSON', 'the body is empty');
      const maxEvents = bulkMaxEventsOf(request);
      done(null, maxEvents === undefined ? parseExactJson(text) : parseJsonArrayBulk(text, maxEvents));
    } catch (error) {
      done(bodyParseError(error), undefined);
    }
  });
}

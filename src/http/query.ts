import type { FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { IngestError } from '../errors.ts';
import { sendProblem } from './problem.ts';

/** POST /events takes `atomic=true|false`, once. */
export const bulkQuerySchema = z.strictObject({ atomic: z.enum(['true', 'false']).optional() });
/** POST /event takes no parameter. */
export const eventQuerySchema = z.strictObject({});

/**
 * A route-level onRequest hook that refuses, before the body is read, a query string with an
 * unknown parameter, a repeated one (fastify parses `a=1&a=2` into an array) or a value outside
 * its schema: `?atomic=1` or `?atomic=TRUE` must not silently mean "not atomic".
 */
export function validateQuery(schema: z.ZodType) {
  // Callback style: it runs on every request, and almost every one has no query string.
  return function queryGate(request: FastifyRequest, reply: FastifyReply, done: () => void): void {
    // No '?' in the URL: no parameter, and fastify's query object need not be built.
    if (request.raw.url?.includes('?') !== true) {
      done();
      return;
    }
    const query = request.query as Record<string, unknown>;
    const parsed = Object.keys(query).length === 0 ? undefined : schema.safeParse(query);
    if (!parsed || parsed.success) {
      done();
      return;
    }
    const issues = parsed.error.issues.map((issue) => ({
      path: ['(query)', ...issue.path.map(String)].join('.'),
      message: issue.code === 'unrecognized_keys' ? `unknown parameter(s): ${issue.keys.join(', ')}` : issue.message,
    }));
    sendProblem(reply, new IngestError('INGEST_ERR_BAD_QUERY', issues.map((issue) => `${issue.path}: ${issue.message}`).join('; '), { issues }));
  };
}

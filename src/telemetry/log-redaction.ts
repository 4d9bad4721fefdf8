/**
 * Paths pino censors in every log line: credentials, wherever a request or its headers are
 * logged. Request bodies are never logged at all (fastify's request logging is off, and no
 * handler logs a body).
 */
export const LOG_REDACTIONS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'headers.authorization',
  'authorization',
  'key',
  'apiKey',
];

/**
 * Internal errors: conditions inside the service that callers handle by `code` (undici's pattern:
 * match on code, never on the message). The base class sets `name` from the subclass and `code`
 * from the constructor. These codes are never sent to clients: the HTTP layer maps the ones it
 * knows to public problem codes (src/errors.ts) and answers 500 for anything else, so an internal
 * error cannot leak through as a public code by accident.
 */
export abstract class IngestInternalError extends Error {
  readonly code: string;

  constructor(code: string, message: string, options: { cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
  }
}

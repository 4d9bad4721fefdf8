/**
 * Errors callers handle by `code` (undici's pattern: match on code, never on the message). The
 * base class sets `name` from the subclass and `code` from the constructor. The service's internal
 * errors (src/internal-errors.ts) are this class under another name, so `instanceof` holds for
 * the batcher's errors and the service's alike.
 */
export abstract class CodedError extends Error {
  readonly code: string;

  constructor(code: string, message: string, options: { cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
  }
}

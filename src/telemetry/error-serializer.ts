/**
 * pino's `err` serializer: what an operator needs from an error, and nothing else.
 *
 * pino's default copies every enumerable field of an error, so an error that carries a pg Client
 * (or a socket, a request, a pool) dumps it whole, type registry included, into one log line.
 * This keeps a fixed set of fields, each bounded:
 *   type, message, code, sqlstate (a pg error's `code` when it is a SQLSTATE), severity, detail,
 *   hint, constraint / table / column, syscall / address / port (network errors), a stack cut to
 *   a few frames, the `cause` chain and an AggregateError's `errors` (bounded depth and count).
 * Anything else an error carries is left out.
 */

export interface SerializedError {
  type: string;
  message: string;
  code?: string;
  sqlstate?: string;
  severity?: string;
  detail?: string;
  hint?: string;
  constraint?: string;
  table?: string;
  column?: string;
  syscall?: string;
  address?: string;
  port?: number;
  stack?: string;
  cause?: SerializedError;
  errors?: SerializedError[];
}

const MAX_MESSAGE_CHARS = 1_000;
const MAX_SHORT_CHARS = 300;
const MAX_STACK_FRAMES = 8;
const MAX_STACK_CHARS = 2_000;
/** Causes followed below the top error. */
const MAX_CAUSE_DEPTH = 4;
const MAX_AGGREGATED = 3;
const SQLSTATE = /^[0-9A-Z]{5}$/;

function truncate(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max)}… (${text.length - max} more characters)`;
}

function shortString(value: unknown, max = MAX_SHORT_CHARS): string | undefined {
  return typeof value === 'string' && value.length > 0 ? truncate(value, max) : undefined;
}

/** The first line(s) of the stack (the message) and a few frames. */
function shortStack(stack: unknown): string | undefined {
  if (typeof stack !== 'string') return undefined;
  const lines = stack.split('\n');
  const firstFrame = lines.findIndex((line) => /^\s+at /.test(line));
  const head = firstFrame === -1 ? lines : lines.slice(0, firstFrame + MAX_STACK_FRAMES);
  const omitted = lines.length - head.length;
  return truncate(head.join('\n') + (omitted > 0 ? `\n    … ${omitted} more frames` : ''), MAX_STACK_CHARS);
}

function serialize(value: unknown, depth: number, seen: Set<unknown>): SerializedError {
  if (!(value instanceof Error) && (typeof value !== 'object' || value === null)) {
    return { type: typeof value, message: truncate(String(value), MAX_MESSAGE_CHARS) };
  }
  seen.add(value);
  const error = value as Partial<Error> & Record<string, unknown>;
  const name = typeof error.name === 'string' ? error.name : undefined;
  const constructorName = (value as { constructor?: { name?: unknown } }).constructor?.name;
  const out: SerializedError = {
    type: name ?? (typeof constructorName === 'string' ? constructorName : 'Object'),
    message: typeof error.message === 'string' ? truncate(error.message, MAX_MESSAGE_CHARS) : '',
  };
  const code = error.code;
  if (typeof code === 'string' || typeof code === 'number') {
    out.code = String(code);
    if (SQLSTATE.test(out.code)) out.sqlstate = out.code;
  }
  const fields = ['severity', 'detail', 'hint', 'constraint', 'table', 'column', 'syscall', 'address'] as const;
  for (const field of fields) {
    const text = shortString(error[field]);
    if (text !== undefined) out[field] = text;
  }
  if (typeof error.port === 'number') out.port = error.port;
  const stack = shortStack(error.stack);
  if (stack !== undefined) out.stack = stack;
  if (depth < MAX_CAUSE_DEPTH) {
    const cause = error.cause;
    if (cause !== undefined && cause !== null && !seen.has(cause)) out.cause = serialize(cause, depth + 1, seen);
    const aggregated = error.errors;
    if (Array.isArray(aggregated) && aggregated.length > 0) {
      out.errors = aggregated
        .slice(0, MAX_AGGREGATED)
        .filter((inner) => !seen.has(inner))
        .map((inner) => serialize(inner, depth + 1, seen));
    }
  }
  return out;
}

/** Serialize an error (or anything thrown) for a log line: a small object, never the error's other fields. */
export function serializeError(error: unknown): SerializedError {
  return serialize(error, 0, new Set());
}

/** For pino's options: `pino({ serializers: errorSerializers })`. */
export const errorSerializers = { err: serializeError } as const;

import { parseArgs } from 'node:util';

/** A numeric `--name=N` option: its default and the range it must fall in. */
export interface NumericOption {
  readonly default?: number;
  readonly min: number;
  readonly max: number;
}

/**
 * The bench scripts' command lines, parsed by node:util's parseArgs (unknown options and stray
 * arguments are refused with its own message): every `numeric` option is range-checked, and
 * `flags` are booleans. An option without a default that is not given is undefined.
 */
export function parseBenchArgs<N extends string, F extends string = never>(
  argv: readonly string[],
  spec: { readonly numeric: Readonly<Record<N, NumericOption>>; readonly flags?: readonly F[] },
): { readonly [K in N]: number } & { readonly [K in F]: boolean } & { readonly given: ReadonlySet<string> } {
  const options: Record<string, { type: 'string' } | { type: 'boolean' }> = {};
  for (const name of Object.keys(spec.numeric)) options[name] = { type: 'string' };
  for (const name of spec.flags ?? []) options[name] = { type: 'boolean' };
  const { values } = parseArgs({ args: [...argv], options, strict: true, allowPositionals: false });
  const result: Record<string, unknown> = {};
  for (const [name, option] of Object.entries<NumericOption>(spec.numeric)) {
    const text = values[name];
    if (typeof text !== 'string') {
      result[name] = option.default;
      continue;
    }
    const parsed = Number(text);
    if (!Number.isFinite(parsed) || parsed < option.min || parsed > option.max) throw new Error(`--${name} must be a number in ${option.min}..${option.max}`);
    result[name] = parsed;
  }
  for (const name of spec.flags ?? []) result[name] = values[name] === true;
  result.given = new Set(Object.keys(values));
  return result as { readonly [K in N]: number } & { readonly [K in F]: boolean } & { readonly given: ReadonlySet<string> };
}

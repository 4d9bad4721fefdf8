import { ConfigError } from '../../src/config.ts';

/** Exit code for a bad command line or configuration (the tools' common convention). */
export const EXIT_USAGE = 2;

/** A command-line mistake: printed with the usage text, exit 2. */
export class UsageError extends Error {}

export const out = (line: string) => process.stdout.write(`${line}\n`);
export const err = (line: string) => process.stderr.write(`${line}\n`);

/**
 * Run a tool's main and set the exit code: its own result; 2 with the message (and the usage text
 * for a usage error, node:util parseArgs' included) for a usage or configuration error; 1 with
 * `describeUnexpected`'s line for anything else.
 */
export async function runCli(main: () => Promise<number>, usage: string, describeUnexpected: (error: unknown) => string): Promise<void> {
  try {
    process.exitCode = await main();
  } catch (error) {
    const isUsage = error instanceof UsageError || String((error as { code?: unknown }).code).startsWith('ERR_PARSE_ARGS');
    if (isUsage || error instanceof ConfigError) {
      err(`${(error as Error).message}\n`);
      if (isUsage) err(usage);
      process.exitCode = EXIT_USAGE;
    } else {
      err(describeUnexpected(error));
      process.exitCode = 1;
    }
  }
}

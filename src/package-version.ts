import { readFileSync } from 'node:fs';

/** The version in package.json (the service's release), read once. */
let version: string | undefined;

export function packageVersion(): string {
  if (version === undefined) {
    const manifest = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version?: string };
    version = manifest.version ?? 'unknown';
  }
  return version;
}

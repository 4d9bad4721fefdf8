import { spawn } from 'node:child_process';
import path from 'node:path';

const MODULE = path.resolve(import.meta.dirname, '../../src/data-dir-lock.ts');

/** A child node process that takes the DATA_DIR lock on `directory`, and holds it until killed. */
export function holdLockInChild(directory: string) {
  const script = `import { acquireDataDirLock } from ${JSON.stringify(MODULE)};
await acquireDataDirLock(${JSON.stringify(directory)});
process.stdout.write('locked\\n');
setInterval(() => {}, 60_000);`;
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  const locked = new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (chunk: Buffer) => chunk.toString().includes('locked') && resolve());
    void exited.then(() => reject(new Error('the child exited before it took the lock')));
  });
  return { child, locked, exited };
}

import { createPublicKey, verify, type KeyObject } from 'node:crypto';
import { readFile, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { fsyncDirectory, removeFileDurably, writeFileDurably } from '../fsync-directory.ts';
import type { SignedCheckpoint } from './checkpoint-destination.ts';
import { checkpointMessage, keyIdOf, type CheckpointLine } from './checkpoints.ts';

/** DATA_DIR/audit-checkpoints-outbox.ndjson: the webhook's waiting lines, across a stop or a crash. */
export const OUTBOX_FILE_NAME = 'audit-checkpoints-outbox.ndjson';

/** What open() found in the outbox file. */
export interface OutboxContents {
  /** The lines to deliver first (good lines of a set-aside file included), each as it was stored. */
  readonly lines: SignedCheckpoint[];
  /** Set when the file could not be read whole: why, and where it was put aside (undefined: the rename failed too). */
  readonly corrupt?: { readonly reason: string; readonly setAsideAs: string | undefined };
}

const HEX_HASH = /^[0-9a-f]{64}$/;
const DECIMAL = /^[1-9][0-9]{0,18}$/;

/**
 * The webhook's outbox: the signed checkpoint lines it has taken and the receiver has not yet
 * acknowledged (one per tenant, the newest), as NDJSON, the very bytes it POSTs. Each write
 * replaces the file whole (a temporary file, fsync, rename, fsync of the directory), so a crash
 * leaves either the previous set or the new one, never a torn file; an empty set removes the
 * file. The DATA_DIR lock (data-dir-lock.ts) makes this process its only writer. Calls to write()
 * must not overlap (the webhook destination runs one at a time).
 */
export class CheckpointOutbox {
  readonly file: string;
  /** Lines in the file now (0: there is none). */
  #onDisk: number;

  private constructor(file: string, onDisk: number) {
    this.file = file;
    this.#onDisk = onDisk;
  }

  /** Lines the file holds, as last written (or found at open). */
  get lines(): number {
    return this.#onDisk;
  }

  /**
   * Read what an earlier run left. Never rejects for the file's contents: a file that cannot be
   * read, or with a line that is not a checkpoint (or whose signature by `key` does not check), is
   * renamed to `<file>.corrupt-<time>` and reported; its good lines are still returned.
   * Lines signed by another key (the key was rotated) are returned as they are.
   */
  static async open(file: string, key: KeyObject, now: Date): Promise<{ outbox: CheckpointOutbox; contents: OutboxContents }> {
    await rm(`${file}.tmp`, { force: true }).catch(() => {}); // a write cut short by a crash: the rename never happened
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { outbox: new CheckpointOutbox(file, 0), contents: { lines: [] } };
      const setAsideAs = await setAside(file, now);
      return { outbox: new CheckpointOutbox(file, 0), contents: { lines: [], corrupt: { reason: `cannot read it: ${(error as Error).message}`, setAsideAs } } };
    }
    const { lines, bad } = parseOutbox(text, key);
    if (bad.length === 0) return { outbox: new CheckpointOutbox(file, lines.length), contents: { lines } };
    const setAsideAs = await setAside(file, now);
    const reason = `${bad.length} line(s) are not checkpoints this service signed (line ${bad[0]!.line}: ${bad[0]!.reason})`;
    return { outbox: new CheckpointOutbox(file, 0), contents: { lines, corrupt: { reason, setAsideAs } } };
  }

  /** Replace the file with `lines` (none: remove it); durable when it resolves. */
  async write(lines: readonly SignedCheckpoint[]): Promise<void> {
    if (lines.length === 0) {
      if (this.#onDisk === 0) return;
      await removeFileDurably(this.file);
    } else {
      await writeFileDurably(this.file, lines.map((line) => line.text).join(''));
    }
    this.#onDisk = lines.length;
  }
}

/** The outbox's lines, each checked as `npm run audit -- verify` would (the signature where it is by `key`). */
export function parseOutbox(text: string, key: KeyObject): { lines: SignedCheckpoint[]; bad: { line: number; reason: string }[] } {
  const keyId = keyIdOf(key);
  const publicKey = key.type === 'private' ? createPublicKey(key) : key;
  const lines: SignedCheckpoint[] = [];
  const bad: { line: number; reason: string }[] = [];
  const raws = text.split('\n');
  if (raws.at(-1) === '') raws.pop();
  raws.forEach((raw, index) => {
    const line = index + 1;
    let parsed: Partial<Record<keyof CheckpointLine, unknown>> | null;
    try {
      parsed = JSON.parse(raw) as typeof parsed;
    } catch {
      return void bad.push({ line, reason: 'not JSON' });
    }
    if (parsed === null || typeof parsed !== 'object') return void bad.push({ line, reason: 'not a JSON object' });
    const { v, tenant, seq, hash, time, key: lineKey, sig } = parsed;
    if (
      v !== 1 ||
      typeof tenant !== 'string' ||
      tenant === '' ||
      typeof seq !== 'string' ||
      !DECIMAL.test(seq) ||
      typeof hash !== 'string' ||
      !HEX_HASH.test(hash) ||
      typeof time !== 'string' ||
      typeof lineKey !== 'string' ||
      typeof sig !== 'string'
    ) {
      return void bad.push({ line, reason: 'not a checkpoint (v, tenant, seq, hash, time, key or sig missing or malformed)' });
    }
    if (lineKey === keyId && !verify(null, checkpointMessage(tenant, seq, hash, time), publicKey, Buffer.from(sig, 'base64'))) {
      return void bad.push({ line, reason: 'bad signature' });
    }
    // Restored lines cover no event of this process (ingest_audit_unsigned_events is this process's).
    lines.push({ tenant, seq: BigInt(seq), text: `${raw}\n`, events: 0 });
  });
  return { lines, bad };
}

/** Rename a bad outbox out of the way, keeping it for whoever looks into it; undefined if that failed too. */
async function setAside(file: string, now: Date): Promise<string | undefined> {
  const target = `${file}.corrupt-${now.toISOString().replaceAll(':', '-')}`;
  try {
    await rename(file, target);
    await fsyncDirectory(path.dirname(file));
    return target;
  } catch {
    return undefined;
  }
}

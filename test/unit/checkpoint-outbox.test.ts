import assert from 'node:assert/strict';
import { createPrivateKey, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { SignedCheckpoint } from '../../src/audit/checkpoint-destination.ts';
import { CheckpointOutbox, OUTBOX_FILE_NAME } from '../../src/audit/checkpoint-outbox.ts';
import { isRefusal } from '../../src/audit/checkpoint-webhook.ts';
import { generateSigningKeyPair, keyIdOf, signCheckpoint } from '../../src/audit/checkpoints.ts';

const key = createPrivateKey(generateSigningKeyPair().privateKeyPem);
const otherKey = createPrivateKey(generateSigningKeyPair().privateKeyPem);
const now = new Date('2026-12-03T14:00:00.000Z');

function signed(tenant: string, seq: bigint, by = key): SignedCheckpoint {
  const line = signCheckpoint(by, keyIdOf(by), { tenant, seq, hash: randomBytes(32) }, '2026-12-03T13:59:00.000Z');
  return { tenant, seq, text: `${JSON.stringify(line)}\n`, events: 5 };
}

describe('CheckpointOutbox: the webhook waiting lines in DATA_DIR', () => {
  let dir: string;
  let n = 0;
  const fresh = async () => {
    n += 1;
    const sub = path.join(dir, `case-${n}`);
    await mkdir(sub);
    return path.join(sub, OUTBOX_FILE_NAME);
  };
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'checkpoint-outbox-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('no file: nothing restored; a write replaces the file whole, the exact lines; an empty set removes it', async () => {
    const file = await fresh();
    const { outbox, contents } = await CheckpointOutbox.open(file, key, now);
    assert.deepEqual(contents, { lines: [] });
    const a1 = signed('a', 1n);
    const b7 = signed('b', 7n);
    await outbox.write([a1, b7]);
    assert.equal(await readFile(file, 'utf8'), a1.text + b7.text);
    const a2 = signed('a', 2n);
    await outbox.write([a2]);
    assert.equal(await readFile(file, 'utf8'), a2.text, 'replaced, not appended');
    assert.equal(outbox.lines, 1);
    assert.deepEqual(await readdir(path.dirname(file)), [OUTBOX_FILE_NAME], 'no temporary file left behind');
    await outbox.write([]);
    assert.deepEqual(await readdir(path.dirname(file)), [], 'delivered: the file is gone');
    assert.equal(outbox.lines, 0);
  });

  it('what an earlier run wrote comes back byte for byte, lines of a rotated-away key included; a torn temporary file is removed', async () => {
    const file = await fresh();
    const first = await CheckpointOutbox.open(file, key, now);
    const lines = [signed('a', 3n), signed('b', 9n, otherKey)];
    await first.outbox.write(lines);
    await writeFile(`${file}.tmp`, '{"v":1,"ten'); // a crash in the middle of the next write
    const { outbox, contents } = await CheckpointOutbox.open(file, key, now);
    assert.equal(contents.corrupt, undefined);
    assert.deepEqual(
      contents.lines.map((line) => [line.tenant, line.seq, line.text, line.events]),
      lines.map((line) => [line.tenant, line.seq, line.text, 0]),
      'the same bytes; they cover no event of the new process',
    );
    assert.equal(outbox.lines, 2);
    assert.deepEqual(await readdir(path.dirname(file)), [OUTBOX_FILE_NAME]);
  });

  it('a line that is not a checkpoint, or whose signature does not check: the file is set aside, its good lines kept', async () => {
    const file = await fresh();
    const good = signed('good', 4n);
    const forged = JSON.stringify({ ...JSON.parse(signed('forged', 5n).text), seq: '6' });
    const text = `${good.text}not json at all\n${forged}\n{"v":1,"tenant":"x"}\n`;
    await writeFile(file, text);
    const { outbox, contents } = await CheckpointOutbox.open(file, key, now);
    assert.deepEqual(
      contents.lines.map((line) => line.text),
      [good.text],
    );
    assert.match(contents.corrupt!.reason, /^3 line\(s\) are not checkpoints this service signed \(line 2: not JSON\)/);
    const aside = `${file}.corrupt-2026-12-03T14-00-00.000Z`;
    assert.equal(contents.corrupt!.setAsideAs, aside);
    assert.equal(await readFile(aside, 'utf8'), text, 'kept as it was, for whoever looks into it');
    assert.equal(outbox.lines, 0, 'the outbox itself is empty until it is written again');
    assert.deepEqual((await readdir(path.dirname(file))).sort(), [path.basename(aside)]);
  });

  it('an outbox that cannot be read at all (a directory in its place): set aside, nothing restored', async () => {
    const file = await fresh();
    await mkdir(file);
    const { outbox, contents } = await CheckpointOutbox.open(file, key, now);
    assert.deepEqual(contents.lines, []);
    assert.match(contents.corrupt!.reason, /^cannot read it: .*EISDIR/);
    assert.equal(contents.corrupt!.setAsideAs, `${file}.corrupt-2026-12-03T14-00-00.000Z`);
    await outbox.write([signed('a', 1n)]);
    assert.match(await readFile(file, 'utf8'), /"tenant":"a"/, 'a fresh outbox takes its place');
  });
});

describe('isRefusal: the statuses a retry does not change', () => {
  const table: [number, boolean][] = [
    [400, true],
    [401, true],
    [403, true],
    [404, true],
    [413, true],
    [415, true],
    [408, false],
    [425, false],
    [429, false],
    [500, false],
    [502, false],
    [503, false],
    [200, false],
    [302, false],
  ];
  for (const [status, refusal] of table) {
    it(`${status}: ${refusal ? 'a refusal, retried only at the longest backoff' : 'not a refusal'}`, () => assert.equal(isRefusal(status), refusal));
  }
});

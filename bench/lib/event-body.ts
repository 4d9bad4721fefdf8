/**
 * Realistic audit events for the benchmark: 300-400 bytes of JSON each, no `id` (the service
 * assigns one, so every request is a distinct event). Deterministic: body i is always the same.
 */

const TENANTS = ['acme-corp', 'globex', 'initech', 'umbrella-eu', 'hooli.prod', 'stark-industries'];
const ACTIONS = [
  'user.login',
  'document.permission.update',
  'invoice.export',
  'api_key.rotate',
  'project.member.remove',
  'settings.sso.update',
];
const TARGET_TYPES = ['document', 'invoice', 'api_key', 'project', 'workspace'];
const NAMES = ['Jane Doe', 'Ravi Shankar', 'Li Wei', 'Amélie Dubois', 'Kwame Mensah', 'Olga Petrova'];
const AGENTS = [
  'Mozilla/5.0 (Macintosh) Safari/605.1',
  'Mozilla/5.0 (Windows NT 10.0) Chrome/126',
  'audit-sdk-go/1.4.2 (linux; amd64)',
];
const OUTCOMES = ['success', 'success', 'success', 'failure'] as const;

function pick<T>(list: readonly T[], index: number): T {
  return list[index % list.length]!;
}

function hex(value: number, width: number): string {
  return (value >>> 0).toString(16).padStart(width, '0').slice(-width);
}

export interface BenchEvent {
  tenant: string;
  occurred_at: string;
  action: string;
  actor: { id: string; type: string; name: string };
  target: { id: string; type: string; name: string };
  outcome: 'success' | 'failure';
  source_ip: string;
  user_agent: string;
  metadata: Record<string, string | number | boolean>;
}

/** The i-th benchmark event (i >= 0). */
export function makeEvent(i: number): BenchEvent {
  const mix = Math.imul(i + 1, 2654435761);
  const occurred = new Date(Date.UTC(2025, 10, 1) + (i % 86_400) * 1000 + (i % 1000));
  const targetType = pick(TARGET_TYPES, i >> 2);
  return {
    tenant: `${pick(TENANTS, i)}-${(i % 40).toString().padStart(3, '0')}`,
    occurred_at: occurred.toISOString(),
    action: pick(ACTIONS, i >> 1),
    actor: { id: `user_${hex(mix, 8)}`, type: 'user', name: pick(NAMES, i >> 3) },
    target: { id: `${targetType}_${hex(mix >>> 7, 6)}`, type: targetType, name: `${targetType} #${i % 997}` },
    outcome: pick(OUTCOMES, i),
    source_ip: `203.0.${(i >> 8) % 256}.${i % 256}`,
    user_agent: pick(AGENTS, i >> 4),
    metadata: { request_id: `req_${hex(mix, 8)}`, mfa: i % 3 === 0 },
  };
}

/** `count` distinct request bodies (JSON text). */
export function makeBodies(count: number): string[] {
  return Array.from({ length: count }, (_, i) => JSON.stringify(makeEvent(i)));
}

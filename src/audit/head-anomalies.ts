import type { Logger } from 'pino';
import type { HeadAnomaly } from './chain-writer.ts';

/** The counter of recovered heads (ingest_audit_heads_recovered_total), by what was found. */
export interface RecoveredHeadsCounter {
  inc(labels: { found: 'missing' | 'behind' }): void;
}

const RUNBOOK = 'runbook "Audit chain head recovered or out of step"';

/** What the log says of one anomaly: what was found, what the service did, what to do. */
export function headAnomalyMessage(anomaly: HeadAnomaly): string {
  const { tenant, headSeq, lastSeq } = anomaly;
  const verify = `run npm run audit -- verify --tenant ${tenant} with the signed checkpoints (${RUNBOOK})`;
  switch (anomaly.found) {
    case 'missing':
      return `audit chain head of tenant ${tenant} was missing while its links go up to seq ${lastSeq}: its row was deleted from audit_chain_heads behind the service. Recreated it at link ${lastSeq} and appended after it (recorded in audit_chain_head_recoveries); the events are stored once and no link was changed. Find out who deleted it (the database's logs), keep the evidence, and ${verify}`;
    case 'behind':
      return `audit chain head of tenant ${tenant} was at seq ${headSeq}, behind its last link ${lastSeq}: the row was edited in audit_chain_heads behind the service. Moved it to link ${lastSeq} and appended after it (recorded in audit_chain_head_recoveries); the events are stored once and no link was changed. Find out who edited it (the database's logs), keep the evidence, and ${verify}`;
    case 'ahead':
      return `audit chain head of tenant ${tenant} is at seq ${headSeq}, past its last link ${lastSeq}: ${headSeq === lastSeq + 1n ? `link ${headSeq} was` : `links ${lastSeq + 1n}-${headSeq} were`} deleted from audit_chain_links (perhaps with their events), or the head was edited. Not repaired: the events are appended after the head, so verify reports link-missing at ${lastSeq + 1n}. Keep the evidence and ${verify}`;
    case 'forked':
      return `audit chain head of tenant ${tenant} is at seq ${headSeq} with another hash than link ${lastSeq}: the head's hash was edited, or link ${lastSeq} was rewritten. Not repaired: the next link follows the head's hash, so verify reports where the chain breaks. Keep the evidence and ${verify}`;
  }
}

/**
 * Report the head anomalies a committed append found (chain-writer.ts HeadAnomaly): one error log
 * each (rare: a head is checked only when it is locked before an append, a tenant's first batch in
 * a process or the retry after a mismatch), and the recovered ones counted.
 */
export function reportHeadAnomalies(logger: Pick<Logger, 'error'>, recovered?: RecoveredHeadsCounter): (anomalies: readonly HeadAnomaly[]) => void {
  return (anomalies) => {
    for (const anomaly of anomalies) {
      if (anomaly.recovered && (anomaly.found === 'missing' || anomaly.found === 'behind')) recovered?.inc({ found: anomaly.found });
      logger.error(
        { tenant: anomaly.tenant, found: anomaly.found, recovered: anomaly.recovered, headSeq: anomaly.headSeq.toString(), lastSeq: anomaly.lastSeq.toString() },
        headAnomalyMessage(anomaly),
      );
    }
  };
}

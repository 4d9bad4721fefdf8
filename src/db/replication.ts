/**
 * Two regions kept in step by PostgreSQL logical replication, both directions (DESIGN.md "Two
 * regions"). Each region's database publishes its `events` (inserts only, through the partition
 * root) and subscribes to the other's with `origin = none`, so a row applied from the other region
 * is never sent back. The same event accepted in both regions (a client that failed over and
 * retried) would be an insert-insert conflict on the key (tenant, id, occurred_at), which stops the
 * apply worker for good; a BEFORE INSERT trigger that fires only in the apply worker (ENABLE
 * REPLICA: never for the service's own writes, so the hot path is untouched) turns that insert into
 * a no-op instead. A second, AFTER trigger counts applied rows into event_counts, so the per-minute
 * rollups hold both regions' events as the table does.
 */
import type pg from 'pg';

export const PUBLICATION = 'events_regions';
const SKIP_TRIGGER = 'events_skip_replicated_duplicate';
const COUNT_TRIGGER = 'events_count_replicated';

type Queryable = Pick<pg.ClientBase, 'query'>;

/** What setup did on one database, for the command's output. */
export interface SetupStep {
  readonly database: string;
  readonly step: string;
  readonly outcome: 'created' | 'updated' | 'exists';
}

/** A database that cannot take part (wal_level, version): the message says what to change. */
export class ReplicationPrerequisiteError extends Error {}

/** The database's identity across clusters: its cluster's system identifier and its name. */
export async function databaseIdentity(db: Queryable): Promise<string> {
  const { rows } = await db.query<{ id: string }>(`SELECT system_identifier::text || '_' || current_database() AS id FROM pg_control_system()`);
  return rows[0]!.id;
}

/** The subscription (and slot) name for the copy of `sourceIdentity`'s events: at most 63 bytes, [a-z0-9_]. */
export function subscriptionName(sourceIdentity: string): string {
  return `events_from_${sourceIdentity.toLowerCase().replace(/[^a-z0-9_]/g, '_')}`.slice(0, 63);
}

export async function checkPrerequisites(db: Queryable, label: string): Promise<void> {
  const { rows } = await db.query<{ version: number; wal_level: string }>(
    `SELECT current_setting('server_version_num')::int AS version, current_setting('wal_level') AS wal_level`,
  );
  const { version, wal_level: walLevel } = rows[0]!;
  if (version < 160000) throw new ReplicationPrerequisiteError(`${label}: PostgreSQL ${version} has no subscription origin = none (16 or later needed)`);
  if (walLevel !== 'logical') {
    throw new ReplicationPrerequisiteError(`${label}: wal_level is ${walLevel}; set wal_level = logical (ALTER SYSTEM SET wal_level = logical) and restart the server`);
  }
}

/** The two triggers and the publication on one database; safe to repeat. */
export async function preparePublisher(db: Queryable, label: string, countApplied = true): Promise<SetupStep[]> {
  const steps: SetupStep[] = [];
  const existing = await db.query(`SELECT 1 FROM pg_trigger WHERE tgrelid = 'events'::regclass AND tgname = ANY($1) AND tgparentid = 0`, [[SKIP_TRIGGER, COUNT_TRIGGER]]);
  // SET search_path FROM CURRENT: the apply worker runs with an empty search_path.
  await db.query(`CREATE OR REPLACE FUNCTION ${SKIP_TRIGGER}() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
  -- Same key, same partition: an event this region stored already (its own write, or an earlier apply).
  IF EXISTS (SELECT 1 FROM events WHERE tenant = NEW.tenant AND id = NEW.id AND occurred_at = NEW.occurred_at) THEN
    RETURN NULL;
  END IF;
  RETURN NEW;
END
$$`);
  await db.query(`CREATE OR REPLACE FUNCTION ${COUNT_TRIGGER}() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
  INSERT INTO event_counts (tenant, action, minute, count) VALUES (NEW.tenant, NEW.action, date_trunc('minute', NEW.occurred_at, 'UTC'), 1)
    ON CONFLICT (tenant, action, minute) DO UPDATE SET count = event_counts.count + 1;
  RETURN NULL;
END
$$`);
  await db.query(`CREATE OR REPLACE TRIGGER ${SKIP_TRIGGER} BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION ${SKIP_TRIGGER}()`);
  await db.query(`CREATE OR REPLACE TRIGGER ${COUNT_TRIGGER} AFTER INSERT ON events FOR EACH ROW EXECUTE FUNCTION ${COUNT_TRIGGER}()`);
  // REPLICA: fires in sessions with session_replication_role = replica (the apply and table-sync
  // workers) only. Recurses to the partitions; partitions created later take the parent's setting.
  await db.query(`ALTER TABLE events ENABLE REPLICA TRIGGER ${SKIP_TRIGGER}`);
  // The counting costs the apply about as much again as the rest (bench:replication): off where no
  // region reads event_counts (ROLLUPS=off everywhere).
  await db.query(`ALTER TABLE events ${countApplied ? 'ENABLE REPLICA' : 'DISABLE'} TRIGGER ${COUNT_TRIGGER}`);
  steps.push({ database: label, step: 'apply-side triggers on events', outcome: existing.rowCount === 2 ? 'exists' : 'created' });

  const publication = await db.query(`SELECT 1 FROM pg_publication WHERE pubname = $1`, [PUBLICATION]);
  if (publication.rowCount === 0) {
    // Inserts only: events are append-only; retention drops partitions in each region on its own
    // (DDL is not replicated), and split-default's moves arrive as inserts the trigger skips.
    await db.query(`CREATE PUBLICATION ${PUBLICATION} FOR TABLE events WITH (publish = 'insert', publish_via_partition_root = true)`);
    steps.push({ database: label, step: `publication ${PUBLICATION}`, outcome: 'created' });
  } else {
    await db.query(`ALTER PUBLICATION ${PUBLICATION} SET TABLE events`);
    await db.query(`ALTER PUBLICATION ${PUBLICATION} SET (publish = 'insert', publish_via_partition_root = true)`);
    steps.push({ database: label, step: `publication ${PUBLICATION}`, outcome: 'exists' });
  }
  return steps;
}

/**
 * `subscriber` subscribes to the publication at `publisherUrl` (as the subscriber's server reaches
 * it). Kept enabled and pointed at that URL when it exists already. copy_data: the publisher's
 * rows from before the subscription arrive by the table-sync worker, whose inserts the trigger
 * filters like the apply worker's.
 */
export async function ensureSubscription(subscriber: Queryable, label: string, publisherUrl: string, publisherIdentity: string): Promise<SetupStep> {
  const name = subscriptionName(publisherIdentity);
  const literal = `'${publisherUrl.replaceAll("'", "''")}'`;
  const existing = await subscriber.query(`SELECT 1 FROM pg_subscription WHERE subname = $1 AND subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())`, [name]);
  if (existing.rowCount === 0) {
    // disable_on_error = false: an apply error (a key raced by a concurrent local write) restarts
    // the worker, which retries the transaction and then finds the row stored.
    await subscriber.query(
      `CREATE SUBSCRIPTION ${name} CONNECTION ${literal} PUBLICATION ${PUBLICATION} WITH (origin = none, copy_data = true, disable_on_error = false)`,
    );
    return { database: label, step: `subscription ${name}`, outcome: 'created' };
  }
  await subscriber.query(`ALTER SUBSCRIPTION ${name} CONNECTION ${literal}`);
  await subscriber.query(`ALTER SUBSCRIPTION ${name} ENABLE`);
  return { database: label, step: `subscription ${name}`, outcome: 'updated' };
}

/**
 * Everything, both directions. `localUrl`/`remoteUrl` must be reachable from the other server.
 * `countApplied`: applied rows are added to event_counts (needed wherever ROLLUPS=on).
 */
export async function setupTwoRegions(local: Queryable, remote: Queryable, localUrl: string, remoteUrl: string, countApplied = true): Promise<SetupStep[]> {
  await checkPrerequisites(local, 'local');
  await checkPrerequisites(remote, 'remote');
  const [localId, remoteId] = [await databaseIdentity(local), await databaseIdentity(remote)];
  if (localId === remoteId) throw new ReplicationPrerequisiteError('--local and --remote are the same database');
  const steps = [...(await preparePublisher(local, 'local', countApplied)), ...(await preparePublisher(remote, 'remote', countApplied))];
  steps.push(await ensureSubscription(local, 'local', remoteUrl, remoteId));
  steps.push(await ensureSubscription(remote, 'remote', localUrl, localId));
  return steps;
}

export interface SubscriptionStatus {
  readonly name: string;
  readonly enabled: boolean;
  /** The apply worker's pid: none while it is restarting after an error, or when disabled. */
  readonly workerPid: number | null;
  readonly receivedLsn: string | null;
  readonly lastMessageAt: Date | null;
  readonly applyErrors: number;
  readonly syncErrors: number;
}

export interface SlotStatus {
  readonly name: string;
  readonly active: boolean;
  /** WAL written here and not yet confirmed applied by the other region. */
  readonly lagBytes: number;
  /** pg_stat_replication's replay_lag (null when idle or not connected). */
  readonly replayLag: string | null;
  readonly walStatus: string | null;
}

export interface ReplicationStatus {
  readonly subscriptions: SubscriptionStatus[];
  readonly slots: SlotStatus[];
}

export async function replicationStatus(db: Queryable): Promise<ReplicationStatus> {
  const subscriptions = await db.query<{ name: string; enabled: boolean; pid: number | null; received_lsn: string | null; last_msg: Date | null; apply_errors: string | null; sync_errors: string | null }>(
    `SELECT s.subname AS name, s.subenabled AS enabled, st.pid, st.received_lsn::text, st.last_msg_receipt_time AS last_msg,
            ss.apply_error_count AS apply_errors, ss.sync_error_count AS sync_errors
       FROM pg_subscription s
       LEFT JOIN pg_stat_subscription st ON st.subid = s.oid AND st.relid IS NULL AND st.leader_pid IS NULL
       LEFT JOIN pg_stat_subscription_stats ss ON ss.subid = s.oid
      WHERE s.subdbid = (SELECT oid FROM pg_database WHERE datname = current_database()) AND s.subname LIKE 'events\\_from\\_%'
      ORDER BY 1`,
  );
  const slots = await db.query<{ name: string; active: boolean; lag_bytes: string | null; replay_lag: string | null; wal_status: string | null }>(
    `SELECT sl.slot_name AS name, sl.active, pg_wal_lsn_diff(pg_current_wal_lsn(), sl.confirmed_flush_lsn)::bigint AS lag_bytes,
            r.replay_lag::text AS replay_lag, sl.wal_status
       FROM pg_replication_slots sl LEFT JOIN pg_stat_replication r ON r.pid = sl.active_pid
      WHERE sl.slot_type = 'logical' AND sl.database = current_database() AND sl.slot_name LIKE 'events\\_from\\_%'
      ORDER BY 1`,
  );
  return {
    subscriptions: subscriptions.rows.map((row) => ({
      name: row.name,
      enabled: row.enabled,
      workerPid: row.pid,
      receivedLsn: row.received_lsn,
      lastMessageAt: row.last_msg,
      applyErrors: Number(row.apply_errors ?? 0),
      syncErrors: Number(row.sync_errors ?? 0),
    })),
    slots: slots.rows.map((row) => ({ name: row.name, active: row.active, lagBytes: Number(row.lag_bytes ?? 0), replayLag: row.replay_lag, walStatus: row.wal_status })),
  };
}

import { connect, nanos, type NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager, StorageType, type JetStreamClient, type JetStreamManager, type StreamInfo } from '@nats-io/jetstream';
import type { Logger } from 'pino';
import type { JetStreamConfig } from '../config.ts';
import { toJetStreamError } from './errors.ts';
import { streamSubjects } from './subject.ts';
import { raceDeadline } from '../deadline.ts';

/** How long close() lets drain() flush before it closes the connection outright. */
const CLOSE_DRAIN_TIMEOUT_MS = 2_000;

/** One NATS connection with its JetStream client and manager; `close()` drains it. */
export interface JetStreamConnection {
  readonly nc: NatsConnection;
  readonly js: JetStreamClient;
  readonly jsm: JetStreamManager;
  readonly stream: string;
  /** Resolves when the stream answers (stream info), bounded by `timeoutMs`: the breaker's probe. */
  probe(timeoutMs: number): Promise<void>;
  /** Whether the server answers a ping (flush) within `timeoutMs`: readiness. */
  reachable(timeoutMs: number): Promise<boolean>;
  close(): Promise<void>;
}

/**
 * Connect to NATS_URL and make sure the stream exists. The client reconnects for ever (publishes
 * made meanwhile time out and are retried by the sink chain); disconnects and reconnects are logged.
 * A first connection that fails rejects (start-up stops with the cause).
 */
export async function connectJetStream(config: JetStreamConfig, logger: Logger, name = 'audit-ingest'): Promise<JetStreamConnection> {
  const nc = await connect({
    servers: config.url,
    name,
    timeout: config.connectTimeoutMs,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 250,
  });
  void (async () => {
    for await (const status of nc.status()) {
      if (status.type === 'disconnect') logger.warn({ server: config.url }, 'NATS connection lost; reconnecting (publishes wait and are retried)');
      else if (status.type === 'reconnect') logger.warn({ server: config.url }, 'NATS connection re-established');
    }
  })().catch(() => {});
  try {
    const jsm = await jetstreamManager(nc, { timeout: config.publishTimeoutMs });
    const js = jetstream(nc, { timeout: config.publishTimeoutMs });
    await ensureStream(jsm, config, logger);
    return {
      nc,
      js,
      jsm,
      stream: config.stream,
      async probe(timeoutMs) {
        const manager = await jetstreamManager(nc, { timeout: timeoutMs, checkAPI: false });
        await manager.streams.info(config.stream).catch((error: unknown) => {
          throw toJetStreamError(error, `stream ${config.stream} info`);
        });
      },
      async reachable(timeoutMs) {
        if (nc.isClosed()) return false;
        const answered = nc.flush().then(
          () => true,
          () => false,
        );
        return raceDeadline(answered, timeoutMs, false);
      },
      async close() {
        if (nc.isClosed()) return;
        // drain() flushes first, which waits for a reconnect while NATS is away: bounded, then closed.
        await raceDeadline(nc.drain().catch(() => {}), CLOSE_DRAIN_TIMEOUT_MS);
        if (!nc.isClosed()) await nc.close().catch(() => {});
      },
    };
  } catch (error) {
    await nc.close().catch(() => {});
    throw error;
  }
}

/** The stream, created (file storage, subjects audit.>, the duplicate window) when missing. */
async function ensureStream(jsm: JetStreamManager, config: JetStreamConfig, logger: Logger): Promise<StreamInfo> {
  const subjects = streamSubjects(config.subjectPrefix);
  const existing = await streamInfo(jsm, config.stream);
  if (existing) {
    if (!(existing.config.subjects ?? []).includes(subjects)) {
      logger.warn({ stream: config.stream, subjects: existing.config.subjects }, `stream ${config.stream} exists without the subjects ${subjects}: publishes may find no stream`);
    }
    return existing;
  }
  try {
    const created = await jsm.streams.add({
      name: config.stream,
      subjects: [subjects],
      storage: StorageType.File,
      duplicate_window: nanos(config.duplicateWindowMs),
    });
    logger.info({ stream: config.stream, subjects: [subjects], duplicateWindowMs: config.duplicateWindowMs }, 'created the JetStream stream');
    return created;
  } catch (error) {
    // Another instance created it between our look and our add.
    const raced = await streamInfo(jsm, config.stream);
    if (raced) return raced;
    throw error;
  }
}

async function streamInfo(jsm: JetStreamManager, stream: string): Promise<StreamInfo | undefined> {
  try {
    return await jsm.streams.info(stream);
  } catch (error) {
    if ((error as { name?: string }).name === 'StreamNotFoundError') return undefined;
    throw error;
  }
}

import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { connect, nanos, type NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager, StorageType, type JetStreamManager, type JsMsg } from '@nats-io/jetstream';

/** The NATS server the JetStream tests use (`nats-server -js` on the default port). */
export const NATS_TEST_URL = 'nats://127.0.0.1:4222';

export const NO_NATS_MESSAGE = 'no NATS server answers at 127.0.0.1:4222: start one with nats-server -js';

/** Whether something accepts TCP connections on 127.0.0.1:4222, within 1 s. */
export function natsAnswers(): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port: 4222 });
    const done = (up: boolean) => {
      socket.destroy();
      resolve(up);
    };
    socket.setTimeout(1000, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

/**
 * Whether the JetStream tests skip: false when NATS answers, the message saying how to start one
 * otherwise. With INGEST_REQUIRE_NATS=1 (.ci/run, once a server answers) a missing server fails instead.
 */
export async function jetStreamSkip(file: string): Promise<string | false> {
  if (await natsAnswers()) return false;
  if (process.env.INGEST_REQUIRE_NATS === '1') throw new Error(`${file}: INGEST_REQUIRE_NATS=1 but ${NO_NATS_MESSAGE}`);
  process.stderr.write(`${file}: skipped, ${NO_NATS_MESSAGE}\n`);
  return NO_NATS_MESSAGE;
}

/**
 * A stream of one test's own (created here as the service creates it): a random name and subject prefix, so tests never touch the
 * AUDIT_EVENTS stream (or each other's) on a shared server. `environment` configures a service
 * or consumer for it; `remove()` deletes the stream.
 */
export interface ScratchStream {
  readonly name: string;
  readonly subjectPrefix: string;
  readonly environment: Record<string, string>;
  readonly nc: NatsConnection;
  readonly jsm: JetStreamManager;
  /** Messages stored in the stream. */
  messageCount(): Promise<number>;
  remove(): Promise<void>;
}

export async function createScratchStream(): Promise<ScratchStream> {
  const suffix = randomBytes(5).toString('hex');
  const name = `TEST_${suffix}`;
  const subjectPrefix = `audit_test_${suffix}`;
  const nc = await connect({ servers: NATS_TEST_URL });
  const jsm = await jetstreamManager(nc);
  await jsm.streams.add({ name, subjects: [`${subjectPrefix}.>`], storage: StorageType.File, duplicate_window: nanos(120_000) });
  return {
    name,
    subjectPrefix,
    nc,
    jsm,
    environment: { SINK: 'jetstream', NATS_URL: NATS_TEST_URL, NATS_STREAM: name, NATS_SUBJECT_PREFIX: subjectPrefix },
    async messageCount() {
      return (await jsm.streams.info(name)).state.messages;
    },
    async remove() {
      await jsm.streams.delete(name).catch(() => false);
      await nc.close();
    },
  };
}

/** Every message in the stream, read with an ephemeral ordered consumer. */
export async function readAllMessages(stream: ScratchStream): Promise<JsMsg[]> {
  const total = await stream.messageCount();
  const consumer = await jetstream(stream.nc).consumers.get(stream.name);
  const messages: JsMsg[] = [];
  while (messages.length < total) {
    const batch = await consumer.fetch({ max_messages: Math.min(total - messages.length, 5000), expires: 2000 });
    for await (const message of batch) messages.push(message);
  }
  return messages;
}

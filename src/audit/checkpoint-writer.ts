import type { KeyObject } from 'node:crypto';
import type { Clock, TimerHandle } from '../clock.ts';
import type { ChainHead } from './chain-writer.ts';
import type { CheckpointDestination, SignedCheckpoint } from './checkpoint-destination.ts';
import { keyIdOf, signCheckpoint } from './checkpoints.ts';

export interface CheckpointWriterOptions {
  readonly key: KeyObject;
  readonly clock: Clock;
  /** Sign after this many chained events since the last checkpoint, ... */
  readonly everyEvents: number;
  /** ... or this long after the first of them; and at close(). */
  readonly intervalMs: number;
  /** Where each trigger's lines go (AUDIT_CHECKPOINT_FILE, AUDIT_CHECKPOINT_WEBHOOK_URL): one or more. */
  readonly destinations: readonly CheckpointDestination[];
}

/**
 * Keeps the newest committed head of each tenant this process appended to, and signs a line per
 * changed tenant every `everyEvents` events or `intervalMs`, and at close(); each destination gets
 * the same lines (checkpoint-destination.ts). A head is signed once: a destination that could not
 * store its lines keeps them itself (the newest per tenant). Ingest never waits for any of it.
 */
export class CheckpointWriter {
  readonly #options: CheckpointWriterOptions;
  readonly #keyId: string;
  readonly #heads = new Map<string, { head: ChainHead; events: number }>();
  #pendingEvents = 0;
  #timer: TimerHandle | undefined;
  #writing: Promise<void> = Promise.resolve();
  #closed = false;
  #closing: Promise<void> | undefined;

  constructor(options: CheckpointWriterOptions) {
    if (options.destinations.length === 0) throw new Error('a checkpoint writer needs a destination');
    this.#options = options;
    this.#keyId = keyIdOf(options.key);
  }

  /**
   * Chained events not yet covered by a checkpoint that reached every destination: those not
   * signed yet, plus the most any destination holds unstored.
   */
  get unsignedEvents(): number {
    return this.#pendingEvents + Math.max(...this.#options.destinations.map((destination) => destination.unexportedEvents));
  }

  /** The id of the public key that checks this writer's signatures. */
  get keyId(): string {
    return this.#keyId;
  }

  /** Heads the sink committed (in any order: two flush slots may finish out of order). */
  record(heads: readonly ChainHead[]): void {
    if (this.#closed) return;
    for (const head of heads) {
      const known = this.#heads.get(head.tenant);
      if (known === undefined) this.#heads.set(head.tenant, { head, events: head.events });
      else this.#heads.set(head.tenant, { head: head.seq > known.head.seq ? head : known.head, events: known.events + head.events });
      this.#pendingEvents += head.events;
    }
    if (this.#pendingEvents >= this.#options.everyEvents) void this.flush();
    else this.#timer ??= this.#options.clock.setTimeout(() => void this.flush(), this.#options.intervalMs);
  }

  /** Sign the changed heads now and hand them to every destination; resolves when they took them. */
  flush(): Promise<void> {
    if (this.#timer !== undefined) {
      this.#options.clock.clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    this.#writing = this.#writing.then(() => this.#write());
    return this.#writing;
  }

  /** Even with no new heads: a destination still holding lines (a failed append) tries them again. */
  async #write(): Promise<void> {
    const heads = [...this.#heads.values()];
    this.#heads.clear();
    this.#pendingEvents = 0;
    const time = new Date(this.#options.clock.now()).toISOString();
    const lines: SignedCheckpoint[] = heads.map(({ head, events }) => ({
      tenant: head.tenant,
      seq: head.seq,
      text: `${JSON.stringify(signCheckpoint(this.#options.key, this.#keyId, head, time))}\n`,
      events,
    }));
    await Promise.all(this.#options.destinations.map((destination) => destination.export(lines)));
  }

  /** Resolves when the checkpoint being handed over (if any) is done. */
  idle(): Promise<void> {
    return this.#writing;
  }

  /** The last checkpoint (every head not yet signed), then each destination closes. Idempotent. */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    this.#closed = true;
    await this.flush();
    await Promise.all(this.#options.destinations.map((destination) => destination.close()));
  }
}

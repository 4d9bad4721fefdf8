/**
 * Where signed checkpoints go (AUDIT_CHECKPOINT_FILE, AUDIT_CHECKPOINT_WEBHOOK_URL): the port the
 * CheckpointWriter hands each trigger's lines to. Every destination gets the same lines, byte for
 * byte, so whatever a destination stores is a checkpoint file `npm run audit -- verify` reads.
 */

export type DestinationName = 'file' | 'webhook';

/** One signed checkpoint line, with what the writer knows about it. */
export interface SignedCheckpoint {
  readonly tenant: string;
  readonly seq: bigint;
  /** The line as the file holds it: JSON of a CheckpointLine, ending in '\n'. */
  readonly text: string;
  /** Chained events this line covers that no line already exported here covered. */
  readonly events: number;
}

/** What a destination reports, for the metrics. */
export interface CheckpointObserver {
  /** One append (file) or one POST (webhook) of checkpoint lines, by result. */
  exported(destination: DestinationName, result: 'written' | 'failed'): void;
  /** Lines dropped unsent because a newer head of their tenant replaced them. */
  superseded(destination: DestinationName, lines: number): void;
}

export interface CheckpointDestination {
  readonly name: DestinationName;
  /**
   * Take one trigger's lines. The file resolves once they are on disk (or the append failed and
   * they are kept for the next trigger); the webhook resolves at once and posts in the background.
   * Never rejects.
   */
  export(lines: readonly SignedCheckpoint[]): Promise<void>;
  /** Chained events covered by lines taken but not yet stored by this destination. */
  readonly unexportedEvents: number;
  /** Store what is kept (within the destination's own bound), then let go of its resources. */
  close(): Promise<void>;
}

/**
 * The lines a destination has taken and not yet stored: at most one per tenant, the newest. A
 * checkpoint of link n pins every link up to n (each link's hash covers the one before), so a newer
 * head of a tenant says all an older one says: replacing the older keeps memory to one line per
 * tenant while a destination is away, and loses no evidence.
 */
export class PendingCheckpoints {
  readonly #byTenant = new Map<string, SignedCheckpoint>();
  #events = 0;

  get size(): number {
    return this.#byTenant.size;
  }

  /** Chained events the kept lines cover. */
  get events(): number {
    return this.#events;
  }

  /** Keep `checkpoint`, or the newer of it and the one kept for its tenant; returns the lines superseded (0 or 1). */
  add(checkpoint: SignedCheckpoint): number {
    this.#events += checkpoint.events;
    const known = this.#byTenant.get(checkpoint.tenant);
    if (known === undefined) {
      this.#byTenant.set(checkpoint.tenant, checkpoint);
      return 0;
    }
    this.#byTenant.set(checkpoint.tenant, mergeNewest(known, checkpoint));
    return 1;
  }

  /** Take out up to `limit` lines, the longest-waiting tenants first. */
  take(limit = Number.POSITIVE_INFINITY): SignedCheckpoint[] {
    const taken: SignedCheckpoint[] = [];
    for (const [tenant, checkpoint] of this.#byTenant) {
      if (taken.length >= limit) break;
      this.#byTenant.delete(tenant);
      this.#events -= checkpoint.events;
      taken.push(checkpoint);
    }
    return taken;
  }

  /** Take out the line kept for `tenant`, if any. */
  takeTenant(tenant: string): SignedCheckpoint | undefined {
    const checkpoint = this.#byTenant.get(tenant);
    if (checkpoint === undefined) return undefined;
    this.#byTenant.delete(tenant);
    this.#events -= checkpoint.events;
    return checkpoint;
  }

  tenants(): string[] {
    return [...this.#byTenant.keys()];
  }

  /** The kept lines, left in place. */
  values(): IterableIterator<SignedCheckpoint> {
    return this.#byTenant.values();
  }
}

/** The newer line of one tenant's two, covering the events of both. */
export function mergeNewest(a: SignedCheckpoint, b: SignedCheckpoint): SignedCheckpoint {
  const newer = b.seq > a.seq ? b : a;
  return { ...newer, events: a.events + b.events };
}

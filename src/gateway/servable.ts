/**
 * Which model versions may be served, as a cache in front of the registry. The registry exposes a change epoch
 * that moves whenever any version's state changes (promotion, quarantine, revocation); the cache polls it every
 * `refreshMs` (1 s) and re-evaluates every version it knows when it moves, so a quarantine takes effect within
 * one refresh interval plus one registry round trip, while the request path costs a map lookup.
 */
export interface ServableSource {
  /** Any value that changes whenever servability of any version may have changed. */
  epoch(): Promise<string | number> | string | number;
  servable(model: string, version: string): Promise<boolean> | boolean;
}

export interface ServableCacheOptions {
  /** Poll interval of the epoch, ms. Default 1000. */
  readonly refreshMs?: number;
  /**
   * How long answers stay usable when the epoch cannot be read, ms. Default 3 × refreshMs. After that every
   * check asks the source directly and a failing source means "not servable" (fail closed).
   */
  readonly maxStaleMs?: number;
  readonly now?: () => number;
}

interface Entry {
  readonly value: boolean;
  /** The epoch read before the value was fetched: valid only while the epoch has not moved since. */
  readonly epoch: string | number | undefined;
}

const key = (model: string, version: string): string => `${model}\0${version}`;

export class ServableCache {
  readonly refreshMs: number;
  readonly #source: ServableSource;
  readonly #maxStaleMs: number;
  readonly #now: () => number;
  readonly #entries = new Map<string, Entry>();
  #epoch: string | number | undefined;
  #verifiedAt = Number.NEGATIVE_INFINITY;
  #timer: NodeJS.Timeout | undefined;
  #refreshing: Promise<void> | undefined;

  constructor(source: ServableSource, options: ServableCacheOptions = {}) {
    this.#source = source;
    this.refreshMs = options.refreshMs ?? 1000;
    this.#maxStaleMs = options.maxStaleMs ?? 3 * this.refreshMs;
    this.#now = options.now ?? Date.now;
  }

  /** Starts polling (after a first refresh). */
  async start(): Promise<void> {
    await this.refresh().catch(() => undefined);
    this.#timer ??= setInterval(() => {
      this.refresh().catch(() => undefined);
    }, this.refreshMs);
    this.#timer.unref();
  }

  stop(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** Reads the epoch; when it moved, re-evaluates every known version before publishing the new answers. */
  refresh(): Promise<void> {
    this.#refreshing ??= this.#refresh().finally(() => {
      this.#refreshing = undefined;
    });
    return this.#refreshing;
  }

  async #refresh(): Promise<void> {
    const epoch = await this.#source.epoch();
    if (epoch !== this.#epoch) {
      const known = [...this.#entries.keys()];
      const fresh = await Promise.all(
        known.map(async (k) => {
          const [model = '', version = ''] = k.split('\0');
          return [k, await this.#source.servable(model, version)] as const;
        }),
      );
      this.#entries.clear();
      for (const [k, value] of fresh) this.#entries.set(k, { value, epoch });
      this.#epoch = epoch;
    }
    this.#verifiedAt = this.#now();
  }

  /**
   * The cached answer for `model@version` if it is current (epoch verified recently, answer read under the
   * current epoch), else undefined: then `check` must ask. Lets the request path skip a promise.
   */
  cached(model: string, version: string): boolean | undefined {
    if (this.#now() - this.#verifiedAt > this.#maxStaleMs) return undefined;
    const entry = this.#entries.get(key(model, version));
    return entry !== undefined && entry.epoch === this.#epoch ? entry.value : undefined;
  }

  /** Whether `model@version` may be served now. Never throws: an unreadable registry means false. */
  async check(model: string, version: string): Promise<boolean> {
    try {
      if (this.#now() - this.#verifiedAt > this.#maxStaleMs) await this.refresh();
      const k = key(model, version);
      const entry = this.#entries.get(k);
      if (entry !== undefined && entry.epoch === this.#epoch) return entry.value;
      const epoch = this.#epoch;
      const value = await this.#source.servable(model, version);
      // Published only if no refresh moved the epoch meanwhile; otherwise the next check asks again.
      if (epoch === this.#epoch) this.#entries.set(k, { value, epoch });
      return value;
    } catch {
      return false;
    }
  }
}

/** A source for deployments without a registry: every configured version is servable, always. */
export const ALWAYS_SERVABLE: ServableSource = { epoch: () => 0, servable: () => true };

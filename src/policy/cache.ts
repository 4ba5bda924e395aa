export interface DecisionCacheOptions {
  /** Most entries kept; the least recently used is evicted beyond it (default 10,000). 0 disables the cache. */
  readonly maxEntries?: number;
  /** Longest an entry is served, in milliseconds (default 60,000). */
  readonly ttlMs?: number;
  /** Clock in milliseconds (tests). */
  readonly now?: () => number;
}

export interface DecisionCacheStats {
  readonly size: number;
  readonly hits: number;
  readonly misses: number;
  readonly bypasses: number;
  readonly evictions: number;
}

interface Slot<V> {
  readonly value: V;
  readonly expiresAt: number;
}

/**
 * A size- and time-bounded LRU map. A `Map` keeps insertion order, so a hit is re-inserted at the end and the first
 * key is always the least recently used. Keys are built by the engine and already cover everything a decision
 * depends on (see PolicyEngine), so the cache itself knows nothing of policies.
 */
export class DecisionCache<V> {
  readonly #slots = new Map<string, Slot<V>>();
  readonly #max: number;
  readonly #ttl: number;
  readonly #now: () => number;
  #hits = 0;
  #misses = 0;
  #bypasses = 0;
  #evictions = 0;

  constructor(options: DecisionCacheOptions = {}) {
    this.#max = Math.max(0, Math.trunc(options.maxEntries ?? 10_000));
    this.#ttl = Math.max(0, options.ttlMs ?? 60_000);
    this.#now = options.now ?? Date.now;
  }

  get enabled(): boolean {
    return this.#max > 0 && this.#ttl > 0;
  }

  get(key: string): V | undefined {
    const slot = this.#slots.get(key);
    if (slot === undefined) {
      this.#misses += 1;
      return undefined;
    }
    this.#slots.delete(key);
    if (slot.expiresAt <= this.#now()) {
      this.#misses += 1;
      return undefined;
    }
    this.#slots.set(key, slot);
    this.#hits += 1;
    return slot.value;
  }

  set(key: string, value: V): void {
    if (!this.enabled) return;
    this.#slots.delete(key);
    this.#slots.set(key, { value, expiresAt: this.#now() + this.#ttl });
    while (this.#slots.size > this.#max) {
      const oldest = this.#slots.keys().next();
      if (oldest.done === true) break;
      this.#slots.delete(oldest.value);
      this.#evictions += 1;
    }
  }

  /** Counts a request that was deliberately not looked up. */
  bypass(): void {
    this.#bypasses += 1;
  }

  clear(): void {
    this.#slots.clear();
  }

  stats(): DecisionCacheStats {
    return {
      size: this.#slots.size,
      hits: this.#hits,
      misses: this.#misses,
      bypasses: this.#bypasses,
      evictions: this.#evictions,
    };
  }
}

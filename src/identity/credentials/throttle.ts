import { InvalidInputError } from '../../crypto/index.ts';

/**
 * Failed-authentication throttle, in memory, per principal and per source address.
 *
 * Each key (a principal, or an address) has a failure count and the time of its last failure. Below
 * `freeFailures` failures nothing is locked; from then on the key is locked for
 * `baseDelaySeconds * 2^(failures - freeFailures)` seconds, capped at `maxDelaySeconds`, counted from the last
 * failure. A key with no failure for `resetAfterSeconds` is forgotten (the sliding window).
 *
 * Defaults:
 * - principal: the 5th failure locks for 1 s, each further one doubles it to 15 min (reached at the 15th failure); forgotten after 1 h
 *   quiet. Slows online guessing against one account to a handful of tries per hour without a hard lockout an
 *   attacker could use to deny service to the account's owner.
 * - address: the 50th failure locks for 1 s, doubling to 15 min; forgotten after 1 h. Higher because many users can
 *   share a NAT or proxy; it catches password spraying (one address, many principals).
 *
 * A success resets the principal only: resetting the address would let an attacker with one valid account
 * launder the address's failures.
 *
 * Memory is bounded by `maxEntries` per kind; beyond it the least recently failed key is dropped. This is a
 * per-process control: behind several instances each throttles separately (see docs/identity-credentials.md).
 */

export interface ThrottlePolicy {
  readonly freeFailures: number;
  readonly baseDelaySeconds: number;
  readonly maxDelaySeconds: number;
  readonly resetAfterSeconds: number;
}

export const PRINCIPAL_THROTTLE_DEFAULTS: ThrottlePolicy = Object.freeze({
  freeFailures: 5,
  baseDelaySeconds: 1,
  maxDelaySeconds: 15 * 60,
  resetAfterSeconds: 3600,
});

export const ADDRESS_THROTTLE_DEFAULTS: ThrottlePolicy = Object.freeze({
  freeFailures: 50,
  baseDelaySeconds: 1,
  maxDelaySeconds: 15 * 60,
  resetAfterSeconds: 3600,
});

export const THROTTLE_DEFAULT_MAX_ENTRIES = 100_000;

export interface AuthThrottleOptions {
  readonly principal?: Partial<ThrottlePolicy>;
  readonly address?: Partial<ThrottlePolicy>;
  /** Milliseconds since the epoch; default Date.now. */
  readonly now?: () => number;
  /** Per kind (principals, addresses). */
  readonly maxEntries?: number;
}

/** Either may be omitted (e.g. no principal before the username is known). */
export interface ThrottleSubject {
  readonly principal?: string;
  readonly address?: string;
}

export interface ThrottleDecision {
  readonly allowed: boolean;
  /** 0 when allowed; otherwise whole seconds until the next attempt may be made (for Retry-After). */
  readonly retryAfterSeconds: number;
}

interface Entry {
  failures: number;
  lastFailureAt: number;
}

function policy(base: ThrottlePolicy, override: Partial<ThrottlePolicy> | undefined): ThrottlePolicy {
  const p = { ...base, ...override };
  const nonNegInt = (n: number) => Number.isSafeInteger(n) && n >= 0;
  if (
    !nonNegInt(p.freeFailures) ||
    !(p.baseDelaySeconds > 0) ||
    !(p.maxDelaySeconds >= p.baseDelaySeconds) ||
    !Number.isFinite(p.maxDelaySeconds) ||
    !(p.resetAfterSeconds >= p.maxDelaySeconds) ||
    !Number.isFinite(p.resetAfterSeconds)
  ) {
    throw new InvalidInputError('invalid throttle policy');
  }
  return p;
}

class Bucket {
  readonly #policy: ThrottlePolicy;
  readonly #maxEntries: number;
  readonly #entries = new Map<string, Entry>();

  constructor(p: ThrottlePolicy, maxEntries: number) {
    this.#policy = p;
    this.#maxEntries = maxEntries;
  }

  get size(): number {
    return this.#entries.size;
  }

  #live(key: string, now: number): Entry | undefined {
    const e = this.#entries.get(key);
    if (e && now - e.lastFailureAt >= this.#policy.resetAfterSeconds * 1000) {
      this.#entries.delete(key);
      return undefined;
    }
    return e;
  }

  /** Milliseconds the key is still locked for (0 if not). */
  lockedForMs(key: string, now: number): number {
    const e = this.#live(key, now);
    if (!e || e.failures < this.#policy.freeFailures) return 0;
    const { baseDelaySeconds, maxDelaySeconds, freeFailures } = this.#policy;
    const exponent = Math.min(e.failures - freeFailures, 52);
    const delayMs = Math.min(baseDelaySeconds * 2 ** exponent, maxDelaySeconds) * 1000;
    return Math.max(0, e.lastFailureAt + delayMs - now);
  }

  fail(key: string, now: number): void {
    const e = this.#live(key, now);
    this.#entries.delete(key); // re-inserted below: Map order is then least recently failed first
    this.#entries.set(key, { failures: (e?.failures ?? 0) + 1, lastFailureAt: now });
    while (this.#entries.size > this.#maxEntries) {
      const oldest = this.#entries.keys().next();
      if (oldest.done === true) break;
      this.#entries.delete(oldest.value);
    }
  }

  reset(key: string): void {
    this.#entries.delete(key);
  }

  failures(key: string, now: number): number {
    return this.#live(key, now)?.failures ?? 0;
  }

  prune(now: number): void {
    for (const key of [...this.#entries.keys()]) this.#live(key, now);
  }
}

export class AuthThrottle {
  readonly #now: () => number;
  readonly #principals: Bucket;
  readonly #addresses: Bucket;

  constructor(options: AuthThrottleOptions = {}) {
    const maxEntries = options.maxEntries ?? THROTTLE_DEFAULT_MAX_ENTRIES;
    if (!Number.isSafeInteger(maxEntries) || maxEntries < 1) {
      throw new InvalidInputError('maxEntries must be a positive integer');
    }
    this.#now = options.now ?? Date.now;
    this.#principals = new Bucket(policy(PRINCIPAL_THROTTLE_DEFAULTS, options.principal), maxEntries);
    this.#addresses = new Bucket(policy(ADDRESS_THROTTLE_DEFAULTS, options.address), maxEntries);
  }

  /** Call before verifying a credential; if not allowed, refuse without verifying (and without recording). */
  check(subject: ThrottleSubject): ThrottleDecision {
    const now = this.#now();
    const ms = Math.max(
      subject.principal === undefined ? 0 : this.#principals.lockedForMs(subject.principal, now),
      subject.address === undefined ? 0 : this.#addresses.lockedForMs(subject.address, now),
    );
    return ms > 0
      ? { allowed: false, retryAfterSeconds: Math.ceil(ms / 1000) }
      : { allowed: true, retryAfterSeconds: 0 };
  }

  /** Records a failed attempt and returns the decision for the next one. */
  recordFailure(subject: ThrottleSubject): ThrottleDecision {
    const now = this.#now();
    if (subject.principal !== undefined) this.#principals.fail(subject.principal, now);
    if (subject.address !== undefined) this.#addresses.fail(subject.address, now);
    return this.check(subject);
  }

  /** A successful authentication resets the principal's counter (not the address's). */
  recordSuccess(subject: ThrottleSubject): void {
    if (subject.principal !== undefined) this.#principals.reset(subject.principal);
  }

  /** Current failure counts, for metrics and tests. */
  failures(subject: ThrottleSubject): { principal: number; address: number } {
    const now = this.#now();
    return {
      principal: subject.principal === undefined ? 0 : this.#principals.failures(subject.principal, now),
      address: subject.address === undefined ? 0 : this.#addresses.failures(subject.address, now),
    };
  }

  /** Drops forgotten entries; call periodically (e.g. every minute) to free memory. */
  prune(): void {
    const now = this.#now();
    this.#principals.prune(now);
    this.#addresses.prune(now);
  }

  get size(): { principals: number; addresses: number } {
    return { principals: this.#principals.size, addresses: this.#addresses.size };
  }
}

import { createHmac, createSecretKey, randomBytes } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { RateLimiterMemory, RateLimiterRedis, RateLimiterRes } from 'rate-limiter-flexible';
import type { RateLimiterAbstract } from 'rate-limiter-flexible';
import type { Redis } from 'ioredis';
import type { WindowLimit } from './config.ts';
import { exceedsTokenBudget, limiterUnavailable, rateLimited, tokenBudgetExhausted } from './errors.ts';

/**
 * Request and token limits per principal and model, over several fixed windows at once, on
 * rate-limiter-flexible. In memory by default; in Redis for several gateway nodes (atomic Lua increments, so a
 * limit holds exactly across nodes). When Redis fails:
 * - `fail-closed`: requests are refused with 503 `limiter_unavailable`;
 * - `fail-open`: each node falls back to an in-memory limiter with the same windows (rate-limiter-flexible's
 *   `insuranceLimiter`), so limits still hold per node while Redis is down.
 */
export type LimiterStore =
  | { readonly kind: 'memory' }
  | {
      readonly kind: 'redis';
      /** An ioredis client created with `enableOfflineQueue: false`, so commands fail fast while down. */
      readonly client: Redis;
      readonly failMode: 'fail-open' | 'fail-closed';
      /** Key prefix shared by every node of one deployment. Default `warden:gw`. */
      readonly prefix?: string;
    };

export interface WindowState {
  readonly kind: 'requests' | 'tokens';
  readonly points: number;
  readonly durationSeconds: number;
  readonly remaining: number;
  /** `<kind>:<points>/<durationSeconds>s`, the window's name in audit records (built once per window). */
  readonly label: string;
}

/** A token reservation to settle with the real usage once the response is known. */
export interface TokenReservation {
  readonly key: string;
  readonly windows: readonly RateLimiterAbstract[];
  readonly reserved: number;
}

interface Window {
  readonly limit: WindowLimit;
  readonly limiter: RateLimiterAbstract;
  readonly label: string;
}

const KEY_CACHE_SIZE = 10_000;

function isLimited(err: unknown): err is RateLimiterRes {
  return err instanceof RateLimiterRes;
}

export function retryAfterSeconds(msBeforeNext: number): number {
  return Math.max(1, Math.ceil(msBeforeNext / 1000));
}

export class Limits {
  readonly #store: LimiterStore;
  readonly #windows = new Map<string, Window>();
  /** Principal ids are keyed-hashed so no identifier sits in Redis in clear; per-process key in memory mode. */
  readonly #keyHmac: KeyObject;

  constructor(store: LimiterStore = { kind: 'memory' }, keyHashKey?: Uint8Array) {
    this.#store = store;
    if (store.kind === 'redis' && keyHashKey === undefined) {
      throw new TypeError('a Redis limiter needs a key-hash key shared by all gateway nodes');
    }
    // A KeyObject: node:crypto imports a raw key again on every createHmac.
    this.#keyHmac = createSecretKey(Buffer.from(keyHashKey ?? randomBytes(32)));
  }

  /** Recently used keys: an HMAC per request is measurable at gateway request rates. */
  readonly #keys = new Map<string, string>();

  /** The limiter key of a principal and model (same on every node sharing `keyHashKey`). */
  keyFor(principalId: string, model: string): string {
    const id = `${model}\0${principalId}`;
    let key = this.#keys.get(id);
    if (key === undefined) {
      key = createHmac('sha256', this.#keyHmac).update(id).digest('base64url').slice(0, 32);
      if (this.#keys.size >= KEY_CACHE_SIZE) this.#keys.clear();
      this.#keys.set(id, key);
    }
    return key;
  }

  /** Endpoint limits are fixed objects: each finds its window without building the window id per request. */
  readonly #byLimit = {
    requests: new WeakMap<WindowLimit, Window>(),
    tokens: new WeakMap<WindowLimit, Window>(),
  };

  #window(kind: 'requests' | 'tokens', limit: WindowLimit): Window {
    const known = this.#byLimit[kind].get(limit);
    if (known !== undefined) return known;
    const id = `${kind}:${limit.points}:${limit.durationSeconds}`;
    let w = this.#windows.get(id);
    if (w === undefined) {
      const options = { points: limit.points, duration: limit.durationSeconds, keyPrefix: id };
      let limiter: RateLimiterAbstract;
      if (this.#store.kind === 'memory') {
        limiter = new RateLimiterMemory(options);
      } else {
        limiter = new RateLimiterRedis({
          ...options,
          keyPrefix: `${this.#store.prefix ?? 'warden:gw'}:${id}`,
          storeClient: this.#store.client,
          rejectIfRedisNotReady: true,
          ...(this.#store.failMode === 'fail-open'
            ? { insuranceLimiter: new RateLimiterMemory({ ...options, keyPrefix: `insurance:${id}` }) }
            : {}),
        });
      }
      w = { limit, limiter, label: `${kind}:${limit.points}/${limit.durationSeconds}s` };
      this.#windows.set(id, w);
    }
    this.#byLimit[kind].set(limit, w);
    return w;
  }

  /** Endpoint limit lists are fixed at start: each is sorted once, not per request. */
  readonly #sorted = new WeakMap<readonly WindowLimit[], readonly WindowLimit[]>();

  #ordered(limits: readonly WindowLimit[]): readonly WindowLimit[] {
    let ordered = this.#sorted.get(limits);
    if (ordered === undefined) {
      ordered = [...limits].sort((a, b) => a.points - b.points || a.durationSeconds - b.durationSeconds);
      this.#sorted.set(limits, ordered);
    }
    return ordered;
  }

  /**
   * Consumes `points` in every window, smallest first (the likeliest to refuse, so refunds are rare), adding
   * each window charged to `charged`. On refusal the windows already charged (and the one that refused, since
   * rate-limiter-flexible counts refused attempts) are refunded, so refused requests do not eat into the budget
   * and a multi-window limit never half-applies.
   */
  async #consume(
    kind: 'requests' | 'tokens',
    key: string,
    limits: readonly WindowLimit[],
    points: number,
    charged: RateLimiterAbstract[],
  ): Promise<WindowState[]> {
    const ordered = this.#ordered(limits);
    const states: WindowState[] = [];
    for (const limit of ordered) {
      const { limiter, label } = this.#window(kind, limit);
      try {
        const res = await limiter.consume(key, points);
        charged.push(limiter);
        states.push({
          kind,
          points: limit.points,
          durationSeconds: limit.durationSeconds,
          remaining: res.remainingPoints,
          label,
        });
      } catch (err) {
        const refund = isLimited(err) ? [...charged, limiter] : charged;
        await Promise.allSettled(refund.map((l) => l.reward(key, points)));
        if (!isLimited(err)) throw limiterUnavailable();
        const retry = retryAfterSeconds(err.msBeforeNext);
        throw kind === 'requests' ? rateLimited(retry) : tokenBudgetExhausted(retry);
      }
    }
    return states;
  }

  /** Counts one request. Throws 429 `rate_limited` with Retry-After, or 503 `limiter_unavailable`. */
  admit(key: string, limits: readonly WindowLimit[]): Promise<WindowState[]> {
    // No wrapper of its own: one promise layer less per request.
    return limits.length === 0 ? Promise.resolve([]) : this.#consume('requests', key, limits, 1, []);
  }

  /** Reserves an estimate of the tokens a call may use. Throws 429 `token_budget_exhausted` or 400. */
  async reserve(
    key: string,
    limits: readonly WindowLimit[],
    estimate: number,
  ): Promise<{ reservation: TokenReservation; states: WindowState[] }> {
    if (limits.some((l) => estimate > l.points)) throw exceedsTokenBudget();
    const windows: RateLimiterAbstract[] = [];
    const states = await this.#consume('tokens', key, limits, estimate, windows);
    return { reservation: { key, windows, reserved: estimate }, states };
  }

  /**
   * Corrects a reservation with the tokens actually used: refunds the difference or charges the excess. Never
   * throws (the response is already paid for); a failure leaves the reservation charged, which errs safe.
   */
  async settle(reservation: TokenReservation, actual: number): Promise<void> {
    const delta = actual - reservation.reserved;
    if (delta === 0 || !Number.isFinite(delta)) return;
    const adjust = (l: RateLimiterAbstract): Promise<unknown> =>
      delta < 0 ? l.reward(reservation.key, -delta) : l.penalty(reservation.key, delta);
    const [only] = reservation.windows;
    // The usual single token window: no `allSettled` array and its extra promises.
    if (reservation.windows.length === 1 && only !== undefined) await adjust(only).catch(() => undefined);
    else await Promise.allSettled(reservation.windows.map(adjust));
  }
}

/**
 * A conservative token estimate for reservation: ~4 characters per token for prose (plus per-message framing),
 * and the whole completion allowance. It is corrected with the upstream's reported `usage` afterwards.
 */
export function estimateTokens(promptChars: number, messages: number, maxTokens: number): number {
  return Math.ceil(promptChars / 4) + 4 * messages + maxTokens;
}

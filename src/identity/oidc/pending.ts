import { OidcError } from './errors.ts';

/** What the server keeps between the redirect to the provider and the callback. Never sent to the browser. */
export interface PendingLogin {
  readonly nonce: string;
  readonly codeVerifier: string;
  readonly redirectUri: string;
  readonly createdAt: number;
  readonly expiresAt: number;
}

/**
 * Server-side storage of logins in progress, keyed by `state`. `take` is the only read and removes the entry,
 * so a state (and the code verifier and nonce behind it) is usable once, whether the login then succeeds or
 * not. A deployment with several Warden instances behind a load balancer needs a shared implementation.
 */
export interface PendingLoginStore {
  /** Throws `OidcError('oidc_login_pending_limit')` when full. */
  put(state: string, login: PendingLogin): Promise<void>;
  /** The entry, removed; undefined when unknown, already taken or expired at `now`. */
  take(state: string, now: number): Promise<PendingLogin | undefined>;
}

/**
 * In-process store. Bounded, because `start` is a public endpoint: when full it refuses new logins rather than
 * evicting live ones (evicting would let anyone cancel other people's logins by starting many).
 */
export class MemoryPendingLoginStore implements PendingLoginStore {
  readonly #entries = new Map<string, PendingLogin>();
  readonly #max: number;
  readonly #now: () => number;

  constructor(options: { maxEntries: number; now?: () => number }) {
    this.#max = options.maxEntries;
    this.#now = options.now ?? Date.now;
  }

  get size(): number {
    return this.#entries.size;
  }

  put(state: string, login: PendingLogin): Promise<void> {
    if (this.#entries.size >= this.#max) this.#sweep(this.#now());
    if (this.#entries.size >= this.#max) {
      return Promise.reject(new OidcError('oidc_login_pending_limit', 'pending login store full'));
    }
    this.#entries.set(state, login);
    return Promise.resolve();
  }

  take(state: string, now: number): Promise<PendingLogin | undefined> {
    const login = this.#entries.get(state);
    this.#entries.delete(state);
    return Promise.resolve(login === undefined || login.expiresAt <= now ? undefined : login);
  }

  #sweep(now: number): void {
    for (const [state, login] of this.#entries) if (login.expiresAt <= now) this.#entries.delete(state);
  }
}

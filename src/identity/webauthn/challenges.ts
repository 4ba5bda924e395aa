import { WebAuthnError } from './errors.ts';

export type CeremonyKind = 'registration' | 'authentication';

/** A challenge the server issued and has not seen back yet. */
export interface PendingChallenge {
  readonly kind: CeremonyKind;
  readonly userId: string;
  readonly expiresAt: number;
}

/**
 * Issued challenges, keyed by the challenge itself (base64url): the client returns it inside clientDataJSON, so
 * no other handle is needed. `take` removes the entry: a challenge is checked once, whether the ceremony then
 * succeeds or not. Several Warden instances need a shared implementation.
 */
export interface ChallengeStore {
  /** Throws `WebAuthnError('webauthn_challenge_limit')` when full. */
  put(challenge: string, pending: PendingChallenge): Promise<void>;
  /** The entry, removed; undefined when unknown, already taken or expired at `now`. */
  take(challenge: string, now: number): Promise<PendingChallenge | undefined>;
}

/** In-process store, bounded; refuses new ceremonies when full rather than evicting live ones. */
export class MemoryChallengeStore implements ChallengeStore {
  readonly #entries = new Map<string, PendingChallenge>();
  readonly #max: number;
  readonly #now: () => number;

  constructor(options: { maxEntries?: number; now?: () => number } = {}) {
    this.#max = options.maxEntries ?? 10_000;
    this.#now = options.now ?? Date.now;
  }

  put(challenge: string, pending: PendingChallenge): Promise<void> {
    if (this.#entries.size >= this.#max) {
      const now = this.#now();
      for (const [key, entry] of this.#entries) if (entry.expiresAt <= now) this.#entries.delete(key);
    }
    if (this.#entries.size >= this.#max) {
      return Promise.reject(new WebAuthnError('webauthn_challenge_limit', 'challenge store full'));
    }
    this.#entries.set(challenge, pending);
    return Promise.resolve();
  }

  take(challenge: string, now: number): Promise<PendingChallenge | undefined> {
    const entry = this.#entries.get(challenge);
    this.#entries.delete(challenge);
    return Promise.resolve(entry === undefined || entry.expiresAt <= now ? undefined : entry);
  }
}

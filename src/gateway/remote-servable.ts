import type { ServableSource } from './servable.ts';
import { isUnavailable } from './remote-warden.ts';
import type { WardenLink } from './remote-warden.ts';

export interface RemoteServableOptions {
  /** How long the last answers stay usable while the server is unreachable, ms. Default 10 000. */
  readonly graceMs?: number;
  readonly now?: () => number;
}

const enc = encodeURIComponent;

/**
 * The registry of the Warden server as the gateway's `ServableSource`: the change epoch from
 * `GET /v1/registry/epoch` (the gateway's `ServableCache` polls it every second and re-asks every known version
 * when it moves) and the verdict from `GET /v1/models/:name/versions/:version/servable` (deployed, signed,
 * verified, scan accepted, not quarantined). While the server cannot be reached the last epoch and verdicts are
 * reused for `graceMs` after the last successful call; then both throw, and the cache answers "not servable".
 * A refusal by the server (4xx: the gateway lacks `model.read`) is never covered by the grace.
 */
export class RemoteServableSource implements ServableSource {
  readonly #link: WardenLink;
  readonly #graceMs: number;
  readonly #now: () => number;
  readonly #verdicts = new Map<string, boolean>();
  #epoch: number | undefined;
  #reachedAt = Number.NEGATIVE_INFINITY;

  constructor(link: WardenLink, options: RemoteServableOptions = {}) {
    this.#link = link;
    this.#graceMs = options.graceMs ?? 10_000;
    this.#now = options.now ?? Date.now;
  }

  async epoch(): Promise<number> {
    try {
      const { epoch } = await this.#link.get<{ epoch?: unknown }>('/v1/registry/epoch');
      if (typeof epoch !== 'number' || !Number.isSafeInteger(epoch)) throw new TypeError('malformed epoch');
      this.#reached();
      if (epoch !== this.#epoch) this.#verdicts.clear();
      this.#epoch = epoch;
      return epoch;
    } catch (err) {
      if (this.#withinGrace(err) && this.#epoch !== undefined) return this.#epoch;
      throw err;
    }
  }

  async servable(model: string, version: string): Promise<boolean> {
    const key = `${model}\0${version}`;
    try {
      const answer = await this.#link.get<{ servable?: unknown }>(
        `/v1/models/${enc(model)}/versions/${enc(version)}/servable`,
      );
      this.#reached();
      const verdict = answer.servable === true;
      this.#verdicts.set(key, verdict);
      return verdict;
    } catch (err) {
      const known = this.#verdicts.get(key);
      if (this.#withinGrace(err) && known !== undefined) return known;
      throw err;
    }
  }

  #reached(): void {
    this.#reachedAt = this.#now();
  }

  #withinGrace(err: unknown): boolean {
    return (
      isUnavailable(err) && !(err instanceof TypeError) && this.#now() - this.#reachedAt <= this.#graceMs
    );
  }
}

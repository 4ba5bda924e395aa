import { createHash } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import {
  kmsPrincipal,
  PolicyEngine,
  PolicyStore,
  declaredPurpose,
  principalContext,
  validatePolicies,
} from '../policy/index.ts';
import type { PolicyEntry } from '../policy/index.ts';
import type { Principal } from '../kms/index.ts';
import type { Authorize } from './gateway.ts';
import type { WardenLink } from './remote-warden.ts';

/** One entry of `GET /v1/policies`. */
interface ListedPolicy {
  readonly id: string;
  readonly source: string;
  readonly text: string;
  readonly policyIds: readonly string[];
}

export class PolicyMirrorError extends Error {
  readonly code = 'policy_mirror_invalid';
  constructor(message: string) {
    super(message);
    this.name = 'PolicyMirrorError';
  }
}

/**
 * A read-only copy of the server's policy set for the engine: every entry exactly as listed (built-in roles,
 * guardrails, custom policies), replaced as a whole. Its version is local and bumps on every replacement, which
 * is all the engine needs to re-parse and drop its decision cache.
 */
class MirroredPolicyStore extends PolicyStore {
  #entries: readonly PolicyEntry[] = [];
  #policies: Record<string, string> = {};
  #version = 1;

  constructor() {
    super({ builtInRoles: false });
  }

  override get version(): number {
    return this.#version;
  }

  override list(): readonly PolicyEntry[] {
    return this.#entries;
  }

  override get(id: string): PolicyEntry | undefined {
    return this.#entries.find((e) => e.id === id);
  }

  override policies(): Record<string, string> {
    return { ...this.#policies };
  }

  override add(): number {
    throw new PolicyMirrorError('the gateway mirrors the server’s policies; change them on the server');
  }

  override remove(): boolean {
    throw new PolicyMirrorError('the gateway mirrors the server’s policies; change them on the server');
  }

  replace(entries: readonly PolicyEntry[]): void {
    const policies: Record<string, string> = {};
    for (const entry of entries) {
      entry.policyIds.forEach((id, i) => {
        policies[id] = entry.parts[i] ?? '';
      });
    }
    this.#entries = entries;
    this.#policies = policies;
    this.#version += 1;
  }
}

/**
 * Splits the listing into Cedar policies the way the server's store did: a one-policy entry is its text under
 * its id; a multi-policy custom entry is re-split by the validator into `<id>#0`, `<id>#1`, ... Anything that
 * does not match what the server says it installed is refused as a whole.
 */
export function mirrorEntries(listed: unknown): PolicyEntry[] {
  if (!Array.isArray(listed)) throw new PolicyMirrorError('policies must be an array');
  return listed.map((raw: unknown) => {
    const e = raw as Partial<ListedPolicy> | null;
    if (
      e === null ||
      typeof e !== 'object' ||
      typeof e.id !== 'string' ||
      typeof e.text !== 'string' ||
      (e.source !== 'built-in' && e.source !== 'guardrail' && e.source !== 'custom') ||
      !Array.isArray(e.policyIds) ||
      e.policyIds.length === 0 ||
      !e.policyIds.every((p) => typeof p === 'string')
    ) {
      throw new PolicyMirrorError('malformed policy entry');
    }
    let parts: readonly string[] = [e.text];
    if (e.policyIds.length > 1) {
      const result = validatePolicies(e.text);
      if (!result.ok || result.policies.length !== e.policyIds.length) {
        throw new PolicyMirrorError(`policy ${JSON.stringify(e.id)} does not split as the server reports`);
      }
      parts = result.policies;
    }
    return { id: e.id, source: e.source, text: e.text, policyIds: [...e.policyIds], parts };
  });
}

export interface RemotePoliciesOptions {
  /** The deployment's environment in every decision's context (`dev` | `staging` | `prod`). */
  readonly environment: string;
  /** Poll interval of `GET /v1/policies`, ms. Default 2000. */
  readonly refreshMs?: number;
  /** How long the last policy set keeps deciding while the server is unreachable, ms. Default 10 000. */
  readonly graceMs?: number;
  readonly now?: () => number;
}

/**
 * Cedar on the gateway: a `PolicyEngine` over a mirror of the server's policies (`GET /v1/policies`, polled every
 * `refreshMs` and swapped when the set changes), deciding `endpoint.invoke` on `Endpoint` with the endpoint's
 * environment and the request's ABAC context — the same request the server builds for its mounted gateway.
 * Before the first successful load, and once the server has missed polls for longer than `graceMs`, everything
 * is denied.
 */
export class RemotePolicies {
  readonly engine: PolicyEngine;
  readonly refreshMs: number;
  readonly #store = new MirroredPolicyStore();
  readonly #link: WardenLink;
  readonly #environment: string;
  readonly #graceMs: number;
  readonly #now: () => number;
  readonly #purposes = new WeakMap<Principal, string>();
  #digest: string | undefined;
  #loadedAt = Number.NEGATIVE_INFINITY;
  #timer: NodeJS.Timeout | undefined;
  #refreshing: Promise<void> | undefined;

  constructor(link: WardenLink, options: RemotePoliciesOptions) {
    this.#link = link;
    this.#environment = options.environment;
    this.refreshMs = options.refreshMs ?? 2000;
    this.#graceMs = options.graceMs ?? 10_000;
    this.#now = options.now ?? Date.now;
    this.engine = new PolicyEngine({ store: this.#store });
  }

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

  /**
   * Whether the loaded policy set may still decide: the server answered a poll within the last
   * `refreshMs + graceMs` — the grace counts from the first poll that could have failed, not from the last
   * success, so a healthy gateway never flaps however short the grace.
   */
  get current(): boolean {
    return this.#now() - this.#loadedAt <= this.refreshMs + this.#graceMs;
  }

  refresh(): Promise<void> {
    this.#refreshing ??= this.#refresh().finally(() => {
      this.#refreshing = undefined;
    });
    return this.#refreshing;
  }

  async #refresh(): Promise<void> {
    const at = this.#now();
    const listing = await this.#link.get<{ version?: unknown; policies?: unknown }>('/v1/policies');
    // The server's version restarts with its process; the content is what matters.
    const digest = createHash('sha256').update(JSON.stringify(listing.policies)).digest('base64url');
    if (digest !== this.#digest) {
      this.#store.replace(mirrorEntries(listing.policies));
      this.#digest = digest;
    }
    this.#loadedAt = at;
  }

  /** Remembers the request's declared purpose (`X-Warden-Purpose`) for the decision on its principal. */
  notePurpose(principal: Principal, request: FastifyRequest): void {
    const purpose = declaredPurpose(request.headers['x-warden-purpose']);
    if (purpose !== undefined) this.#purposes.set(principal, purpose);
  }

  readonly authorize: Authorize = (principal, target) => {
    if (!this.current) return false;
    const purpose = this.#purposes.get(principal);
    const decision = this.engine.authorize({
      principal: kmsPrincipal(principal),
      action: 'endpoint.invoke',
      resource: { type: 'Endpoint', id: target.endpoint, attrs: { environment: target.environment } },
      context: {
        ...principalContext(principal, this.#now()),
        environment: this.#environment,
        ...(purpose === undefined ? {} : { purpose }),
      },
    });
    return decision.decision === 'allow';
  };
}

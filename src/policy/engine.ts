import { isIP } from 'node:net';
import { DecisionCache } from './cache.ts';
import type { DecisionCacheOptions, DecisionCacheStats } from './cache.ts';
import {
  checkParseSchema,
  policyToJson,
  preparsePolicySet,
  preparseSchema,
  statefulIsAuthorized,
} from './cedar.ts';
import type { CedarValueJson, EntityJson } from './cedar.ts';
import { NAMESPACE, WARDEN_SCHEMA } from './schema.ts';
import type { ActionId, PrincipalType, ResourceType } from './schema.ts';
import { PolicyStore } from './store.ts';

/** An attribute value the engine passes to Cedar: strings, integers, booleans and sets of strings. */
export type AttrValue = string | number | boolean | readonly string[];
export type Attrs = Readonly<Record<string, AttrValue>>;

export interface AuthzPrincipal {
  readonly type: PrincipalType;
  readonly id: string;
  /** Role names; each becomes a `Warden::Role` parent of the principal. */
  readonly roles?: readonly string[];
  /** Group names; each becomes a `Warden::Group` parent of a `User`. */
  readonly groups?: readonly string[];
  readonly attrs?: Attrs;
}

export interface AuthzResource {
  readonly type: ResourceType;
  readonly id: string;
  readonly attrs?: Attrs;
  /** For a `ModelVersion`: the id of its `Model`. */
  readonly model?: string;
}

export interface Clock {
  /** Minutes since midnight, 0–1439. */
  readonly minuteOfDay: number;
  /** ISO day of week: 1 = Monday … 7 = Sunday. */
  readonly dayOfWeek: number;
}

export interface AuthzContext {
  /** Time of day; when left out the engine fills it in from its clock and time zone. */
  readonly now?: Clock | Date;
  readonly sourceIp?: string;
  /** Seconds since the principal last passed MFA. Requests carrying it bypass the decision cache. */
  readonly mfaAgeSeconds?: number;
  readonly authMethod?: string;
  readonly environment?: string;
  readonly purpose?: string;
  /** True when the request comes from another network than the one its session logged in from. */
  readonly networkChanged?: boolean;
}

export interface AuthzRequest {
  readonly principal: AuthzPrincipal;
  readonly action: ActionId;
  readonly resource: AuthzResource;
  readonly context?: AuthzContext;
}

export interface Decision {
  readonly decision: 'allow' | 'deny';
  /** Ids of the policies that determined the decision (the permits for allow, the forbids for an explicit deny). */
  readonly reasons: readonly string[];
  /** Evaluation errors (an erroring policy is skipped by Cedar) and request errors (which deny). */
  readonly errors: readonly string[];
  /** Policy-set version the decision was made against. */
  readonly version: number;
  readonly cached: boolean;
}

export interface PolicyEngineOptions {
  /** Policies to evaluate (default: a store with the built-in roles only). */
  readonly store?: PolicyStore;
  /** Decision cache bounds; `{ maxEntries: 0 }` disables it. */
  readonly cache?: DecisionCacheOptions;
  /** IANA time zone in which `context.now` is derived (default UTC). */
  readonly timeZone?: string;
  /** Wall clock (tests). */
  readonly clock?: () => Date;
}

export class PolicyEngineError extends Error {
  override readonly name = 'PolicyEngineError';
}

const ACTION_TYPE = `${NAMESPACE}::Action`;
const SCHEMA_ID = 'warden-schema';
let schemaLoaded = false;
let engineCount = 0;

/** Cedar keeps pre-parsed schemas and policy sets per WebAssembly instance, keyed by name: loaded once here. */
function loadSchema(): void {
  if (schemaLoaded) return;
  const parsed = checkParseSchema(WARDEN_SCHEMA);
  const answer = parsed.type === 'success' ? preparseSchema(SCHEMA_ID, WARDEN_SCHEMA) : parsed;
  if (answer.type === 'failure') {
    throw new PolicyEngineError(`Warden schema invalid: ${answer.errors.map((e) => e.message).join('; ')}`);
  }
  schemaLoaded = true;
}

interface Prepared {
  readonly context: Record<string, CedarValueJson>;
  readonly principalAttrs: Record<string, CedarValueJson>;
  readonly resourceAttrs: Record<string, CedarValueJson>;
  readonly roles: readonly string[];
  readonly groups: readonly string[];
}

const DAYS: Readonly<Record<string, number>> = { Mon: 1, Tue: 2, Wed: 3, Thu: 4, Fri: 5, Sat: 6, Sun: 7 };

/** The `Clock` of an instant in a time zone. */
export function clockAt(date: Date, timeZone = 'UTC'): Clock {
  const parts = new Intl.DateTimeFormat('en-US', {
    timeZone,
    weekday: 'short',
    hour: '2-digit',
    minute: '2-digit',
    hourCycle: 'h23',
  }).formatToParts(date);
  const get = (type: string): string => parts.find((p) => p.type === type)?.value ?? '';
  return {
    minuteOfDay: Number(get('hour')) * 60 + Number(get('minute')),
    dayOfWeek: DAYS[get('weekday')] ?? 0,
  };
}

function cedarAttrs(
  attrs: Attrs | undefined,
  errors: string[],
  where: string,
): Record<string, CedarValueJson> {
  const out: Record<string, CedarValueJson> = {};
  if (attrs === undefined) return out;
  for (const name of Object.keys(attrs).sort()) {
    const value = attrs[name];
    if (typeof value === 'number' && !Number.isSafeInteger(value)) {
      errors.push(`${where}.${name}: only integers are supported`);
      continue;
    }
    if (value !== undefined) out[name] = typeof value === 'object' ? [...value].sort() : value;
  }
  return out;
}

/**
 * Authorises requests against Warden's schema and the policies of a `PolicyStore`. The schema is parsed once per
 * process and the policy set once per store version (both pre-parsed inside Cedar), so a decision costs one Cedar
 * evaluation over two entities, or one cache lookup.
 *
 * Cache safety: the key is the canonical JSON of everything Cedar sees — policy-set version, principal (type, id,
 * sorted roles and groups, attributes), action, resource (type, id, attributes, model) and the flattened context.
 * `context.now` has minute resolution by construction, so time is bucketed by minute: an entry can never outlive the
 * minute it was computed for under a different clock value. `mfaAgeSeconds` changes every second and sits next to a
 * threshold, so any request carrying it bypasses the cache. Entries also expire after the TTL, and any policy change
 * bumps the version, so no entry made under an older policy set is ever served.
 */
export class PolicyEngine {
  readonly store: PolicyStore;
  readonly #cache: DecisionCache<Decision>;
  readonly #policySetId: string;
  readonly #timeZone: string;
  readonly #clock: () => Date;
  #loadedVersion = 0;
  #forbids: ReadonlySet<string> = new Set();
  #minute = -1;
  #minuteClock: Clock = { minuteOfDay: 0, dayOfWeek: 0 };

  constructor(options: PolicyEngineOptions = {}) {
    loadSchema();
    engineCount += 1;
    this.#policySetId = `warden-policies-${engineCount}`;
    this.store = options.store ?? new PolicyStore();
    this.#cache = new DecisionCache<Decision>(options.cache);
    this.#timeZone = options.timeZone ?? 'UTC';
    this.#clock = options.clock ?? ((): Date => new Date());
    clockAt(new Date(0), this.#timeZone); // throws RangeError now for an unknown time zone
    this.#reload();
  }

  /** The policy-set version decisions are currently made against. */
  get version(): number {
    return this.#loadedVersion;
  }

  cacheStats(): DecisionCacheStats {
    return this.#cache.stats();
  }

  authorize(request: AuthzRequest): Decision {
    const errors: string[] = [];
    if (this.store.version !== this.#loadedVersion) {
      try {
        this.#reload();
      } catch (err) {
        // Fail closed: never decide against a policy set other than the store's current one.
        const message = err instanceof Error ? err.message : String(err);
        return {
          decision: 'deny',
          reasons: [],
          errors: [message],
          version: this.store.version,
          cached: false,
        };
      }
    }
    const version = this.#loadedVersion;
    const { principal, resource } = request;
    const prepared = this.#prepare(request, errors);
    if (prepared === undefined) return { decision: 'deny', reasons: [], errors, version, cached: false };
    const { context, principalAttrs, resourceAttrs, roles, groups } = prepared;

    const bypass = request.context?.mfaAgeSeconds !== undefined || !this.#cache.enabled;
    const key = bypass
      ? ''
      : JSON.stringify([
          version,
          principal.type,
          principal.id,
          roles,
          groups,
          principalAttrs,
          request.action,
          resource.type,
          resource.id,
          resourceAttrs,
          resource.model ?? null,
          context,
        ]);
    if (bypass) {
      this.#cache.bypass();
    } else {
      const hit = this.#cache.get(key);
      if (hit !== undefined) return { ...hit, cached: true };
    }

    const decision = this.#evaluate(request, prepared, {
      policySetId: this.#policySetId,
      version,
      errors,
      forbids: this.#forbids,
    });
    if (!bypass && decision.errors.length === 0) this.#cache.set(key, decision);
    return decision;
  }

  /** Convenience: `authorize(...).decision === 'allow'`. */
  isAllowed(request: AuthzRequest): boolean {
    return this.authorize(request).decision === 'allow';
  }

  /**
   * The decision `candidate` (this engine's store with a change applied: `PolicyStore.withChange`) would make,
   * uncached, without installing it: to refuse a change that would take away the right to undo it.
   */
  authorizeAgainst(candidate: PolicyStore, request: AuthzRequest): Decision {
    const errors: string[] = [];
    const deny = (message: string): Decision => ({
      decision: 'deny',
      reasons: [],
      errors: [...errors, message],
      version: candidate.version,
      cached: false,
    });
    const candidateId = `${this.#policySetId}:candidate`;
    const answer = preparsePolicySet(candidateId, { staticPolicies: candidate.policies() });
    if (answer.type === 'failure') return deny(answer.errors.map((e) => e.message).join('; '));
    const prepared = this.#prepare(request, errors);
    if (prepared === undefined) return deny('invalid request');
    return this.#evaluate(request, prepared, {
      policySetId: candidateId,
      version: candidate.version,
      errors,
      forbids: forbidIds(candidate.policies()),
    });
  }

  /** What Cedar is given besides the uids; undefined (with `errors` filled) when the request cannot be encoded. */
  #prepare(request: AuthzRequest, errors: string[]): Prepared | undefined {
    const context = this.#context(request.context, errors);
    const principalAttrs = cedarAttrs(request.principal.attrs, errors, 'principal');
    const resourceAttrs = cedarAttrs(request.resource.attrs, errors, 'resource');
    const roles = [...new Set(request.principal.roles ?? [])].sort();
    const groups = [...new Set(request.principal.groups ?? [])].sort();
    return errors.length > 0 ? undefined : { context, principalAttrs, resourceAttrs, roles, groups };
  }

  #evaluate(
    request: AuthzRequest,
    { context, principalAttrs, resourceAttrs, roles, groups }: Prepared,
    against: {
      readonly policySetId: string;
      readonly version: number;
      readonly errors: string[];
      /** Cedar ids of the `forbid` policies of that set. */
      readonly forbids: ReadonlySet<string>;
    },
  ): Decision {
    const { principal: p, resource: r } = request;
    const { version, errors } = against;
    const principalUid = { type: `${NAMESPACE}::${p.type}`, id: p.id };
    const resourceUid = { type: `${NAMESPACE}::${r.type}`, id: r.id };
    const entities: EntityJson[] = [
      {
        uid: principalUid,
        attrs: principalAttrs,
        parents: [
          ...roles.map((id) => ({ type: `${NAMESPACE}::Role`, id })),
          ...(p.type === 'User' ? groups.map((id) => ({ type: `${NAMESPACE}::Group`, id })) : []),
        ],
      },
    ];
    // Principal and resource types never overlap, so the two entities are always distinct.
    entities.push({
      uid: resourceUid,
      attrs: resourceAttrs,
      parents:
        r.type === 'ModelVersion' && r.model !== undefined
          ? [{ type: `${NAMESPACE}::Model`, id: r.model }]
          : [],
    });
    try {
      const answer = statefulIsAuthorized({
        principal: principalUid,
        action: { type: ACTION_TYPE, id: request.action },
        resource: resourceUid,
        context,
        entities,
        preparsedSchemaName: SCHEMA_ID,
        validateRequest: true,
        preparsedPolicySetId: against.policySetId,
      });
      if (answer.type === 'failure') {
        return {
          decision: 'deny',
          reasons: [],
          errors: [...errors, ...answer.errors.map((e) => e.message)],
          version,
          cached: false,
        };
      }
      const { decision, diagnostics } = answer.response;
      // Cedar skips a policy whose condition errors (an overflow, a missing attribute): for a `forbid` that would
      // let the request through, so an erroring forbid denies, and is named among the reasons.
      const erringForbids = diagnostics.errors.map((e) => e.policyId).filter((id) => against.forbids.has(id));
      return {
        decision: erringForbids.length > 0 ? 'deny' : decision,
        reasons: [...new Set([...diagnostics.reason, ...erringForbids])].sort(),
        errors: [...errors, ...diagnostics.errors.map((e) => `${e.policyId}: ${e.error.message}`)],
        version,
        cached: false,
      };
    } catch (err) {
      return {
        decision: 'deny',
        reasons: [],
        errors: [...errors, `cedar failed: ${err instanceof Error ? err.message : String(err)}`],
        version,
        cached: false,
      };
    }
  }

  #context(input: AuthzContext | undefined, errors: string[]): Record<string, CedarValueJson> {
    const out: Record<string, CedarValueJson> = {};
    const now = input?.now ?? this.#currentClock();
    const clock = now instanceof Date ? clockAt(now, this.#timeZone) : now;
    if (!Number.isSafeInteger(clock.minuteOfDay) || !Number.isSafeInteger(clock.dayOfWeek)) {
      errors.push('context.now: minuteOfDay and dayOfWeek must be integers');
    }
    out['now'] = { minuteOfDay: clock.minuteOfDay, dayOfWeek: clock.dayOfWeek };
    if (input === undefined) return out;
    if (input.sourceIp !== undefined) {
      // An address Cedar could not parse would fail the request; leaving it out makes address guardrails deny.
      if (isIP(input.sourceIp) === 0) errors.push('context.sourceIp: not an IP address');
      else out['sourceIp'] = { __extn: { fn: 'ip', arg: input.sourceIp } };
    }
    if (input.mfaAgeSeconds !== undefined) {
      if (!Number.isSafeInteger(input.mfaAgeSeconds))
        errors.push('context.mfaAgeSeconds: must be an integer');
      else out['mfaAgeSeconds'] = input.mfaAgeSeconds;
    }
    if (typeof input.networkChanged === 'boolean') out['networkChanged'] = input.networkChanged;
    for (const name of ['authMethod', 'environment', 'purpose'] as const) {
      const value = input[name];
      if (value !== undefined) out[name] = value;
    }
    return out;
  }

  /** The engine clock's `Clock`, recomputed at most once per wall-clock minute (Intl formatting is not free). */
  #currentClock(): Clock {
    const date = this.#clock();
    const minute = Math.floor(date.getTime() / 60_000);
    if (minute !== this.#minute) {
      this.#minuteClock = clockAt(date, this.#timeZone);
      this.#minute = minute;
    }
    return this.#minuteClock;
  }

  #reload(): void {
    const version = this.store.version;
    const answer = preparsePolicySet(this.#policySetId, { staticPolicies: this.store.policies() });
    if (answer.type === 'failure') {
      throw new PolicyEngineError(`policy set invalid: ${answer.errors.map((e) => e.message).join('; ')}`);
    }
    this.#forbids = forbidIds(this.store.policies());
    this.#loadedVersion = version;
    this.#cache.clear();
  }
}

/** The Cedar ids of the `forbid` policies among `policies` (id → text). */
function forbidIds(policies: Record<string, string>): Set<string> {
  const ids = new Set<string>();
  for (const [id, text] of Object.entries(policies)) {
    const parsed = policyToJson(text);
    // A text that does not parse alone cannot be in a set that loaded; count it as a forbid to stay closed.
    if (parsed.type !== 'success' || parsed.json.effect === 'forbid') ids.add(id);
  }
  return ids;
}

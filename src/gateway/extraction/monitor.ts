import { BusinessClock } from './clock.ts';
import { resolveConfig, type ResolvedConfig } from './config.ts';
import {
  BoundaryDetector,
  BurstDetector,
  CoefficientCache,
  CoverageDetector,
  NearDuplicateDetector,
  NeighbourWindow,
  OffHoursDetector,
  PradaDetector,
  type Finding,
  type Neighbours,
  type Prepared,
} from './detectors.ts';
import { hash32, Mulberry32, simHash, tokenize } from './hashing.ts';
import {
  ACTIONS,
  DETECTORS,
  SCOPES,
  type Action,
  type DetectorName,
  type ExtractionOptions,
  type Observation,
  type ObserveResult,
  type Scope,
  type Verdict,
} from './types.ts';

const NO_NEIGHBOURS: Neighbours = {
  featureDistance: Number.POSITIVE_INFINITY,
  featureLabel: undefined,
  textBits: Number.POSITIVE_INFINITY,
  textLabel: undefined,
};

const severity = (a: Action): number => ACTIONS.indexOf(a);
const worse = (a: Action, b: Action): Action => (severity(b) > severity(a) ? b : a);

/** Everything the monitor keeps about one principal, network or organisation. */
class ScopeState {
  readonly window: NeighbourWindow | null;
  readonly prada: PradaDetector | null;
  readonly burst: BurstDetector | null;
  readonly duplicate: NearDuplicateDetector | null;
  readonly boundary: BoundaryDetector | null;
  readonly coverage: CoverageDetector | null;
  readonly offHours: OffHoursDetector | null;
  held: Action = 'none';
  heldUntil = Number.NEGATIVE_INFINITY;

  constructor(config: ResolvedConfig, scope: Scope, rng: Mulberry32, coefficients: CoefficientCache) {
    const p = config.params[scope];
    this.prada = p.prada === null ? null : new PradaDetector(p.prada, rng, coefficients);
    this.burst = p.burst === null ? null : new BurstDetector(p.burst);
    this.duplicate = p['near-duplicate'] === null ? null : new NearDuplicateDetector(p['near-duplicate']);
    this.boundary = p.boundary === null ? null : new BoundaryDetector(p.boundary);
    this.coverage = p.coverage === null ? null : new CoverageDetector(p.coverage);
    this.offHours = p['off-hours'] === null ? null : new OffHoursDetector(p['off-hours']);
    this.window =
      this.duplicate === null && this.boundary === null ? null : new NeighbourWindow(config.neighbourWindow);
  }

  observe(q: Prepared, scope: Scope, out: Verdict[]): void {
    const nn = this.window?.nearest(q) ?? NO_NEIGHBOURS;
    const emit = (detector: DetectorName, f: Finding | null): void => {
      if (f !== null) out.push({ detector, score: f.score, reason: f.reason, scope });
    };
    emit('prada', this.prada?.observe(q) ?? null);
    emit('burst', this.burst?.observe(q) ?? null);
    emit('near-duplicate', this.duplicate?.observe(q, nn) ?? null);
    emit('boundary', this.boundary?.observe(q, nn) ?? null);
    emit('coverage', this.coverage?.observe(q) ?? null);
    emit('off-hours', this.offHours?.observe(q) ?? null);
    if (q.z !== null || q.sim !== null) this.window?.add(q);
  }

  bytes(): number {
    return (
      256 +
      (this.window?.bytes() ?? 0) +
      (this.prada?.bytes() ?? 0) +
      (this.burst?.bytes() ?? 0) +
      (this.duplicate?.bytes() ?? 0) +
      (this.boundary?.bytes() ?? 0) +
      (this.coverage?.bytes() ?? 0) +
      (this.offHours?.bytes() ?? 0)
    );
  }
}

/** A map that keeps at most `capacity` keys, evicting the least recently used. */
class LruMap<V> {
  readonly #map = new Map<string, V>();
  readonly #capacity: number;
  evictions = 0;
  constructor(capacity: number) {
    this.#capacity = capacity;
  }
  getOrCreate(key: string, create: () => V): V {
    let v = this.#map.get(key);
    if (v !== undefined) {
      this.#map.delete(key);
    } else {
      v = create();
      if (this.#map.size >= this.#capacity) {
        const oldest = this.#map.keys().next();
        if (oldest.done !== true) {
          this.#map.delete(oldest.value);
          this.evictions++;
        }
      }
    }
    this.#map.set(key, v);
    return v;
  }
  get size(): number {
    return this.#map.size;
  }
  values(): IterableIterator<V> {
    return this.#map.values();
  }
}

export interface ExtractionStats {
  readonly observations: number;
  readonly malformed: number;
  readonly tracked: { readonly [S in Scope]: number };
  readonly caps: { readonly [S in Scope]: number };
  readonly evictions: { readonly [S in Scope]: number };
  /** Verdicts emitted so far, per detector. */
  readonly verdicts: { readonly [D in DetectorName]: number };
  /** Observations per resulting action. */
  readonly actions: { readonly [A in Action]: number };
  /** Rough estimate of the memory held by the tracked state, in bytes. */
  readonly approxBytes: number;
}

/**
 * Model-extraction detection for the inference gateway: one instance per protected model. Every observation
 * is analysed for its principal, its source network and (when given) its organisation, so an attack spread
 * over many accounts is still seen whole by the aggregate scopes. Pure and deterministic: no I/O, no clock
 * (time comes from `at`), reservoir sampling from a seeded generator.
 */
export class ExtractionMonitor {
  readonly #config: ResolvedConfig;
  readonly #rng: Mulberry32;
  // 2^19 coefficients (4 MiB) hold every size of the default 1000-distance window.
  readonly #coefficients = new CoefficientCache(1 << 19);
  readonly #clock: BusinessClock | null;
  readonly #scopes: { readonly [S in Scope]: LruMap<ScopeState> };
  #dims: number | null;
  #observations = 0;
  #malformed = 0;
  readonly #verdictCounts = Object.fromEntries(DETECTORS.map((d) => [d, 0])) as Record<DetectorName, number>;
  readonly #actionCounts = Object.fromEntries(ACTIONS.map((a) => [a, 0])) as Record<Action, number>;

  constructor(options: ExtractionOptions) {
    this.#config = resolveConfig(options);
    this.#rng = new Mulberry32(this.#config.seed);
    this.#clock = this.#config.businessHours === null ? null : new BusinessClock(this.#config.businessHours);
    this.#dims = this.#config.mean?.length ?? null;
    this.#scopes = {
      principal: new LruMap(this.#config.caps.principal),
      network: new LruMap(this.#config.caps.network),
      organisation: new LruMap(this.#config.caps.organisation),
    };
  }

  observe(request: Observation): ObserveResult {
    this.#observations++;
    const prepared = this.#prepare(request);
    if (prepared === null) {
      this.#malformed++;
      const verdicts: Verdict[] = [
        { detector: 'malformed', score: 1, reason: 'observation cannot be analysed', scope: 'principal' },
      ];
      return this.#finish(verdicts, this.#decide(verdicts, 'principal'));
    }
    const keys: [Scope, string][] = [
      ['principal', request.principal],
      ['network', request.network],
    ];
    if (request.organisation !== undefined) keys.push(['organisation', request.organisation]);
    const verdicts: Verdict[] = [];
    let action: Action = 'none';
    for (const [scope, key] of keys) {
      const state = this.#scopes[scope].getOrCreate(
        key,
        () => new ScopeState(this.#config, scope, this.#rng, this.#coefficients),
      );
      const start = verdicts.length;
      state.observe(prepared, scope, verdicts);
      const now = this.#decide(verdicts.slice(start), scope);
      if (severity(now) > severity('none')) {
        if (prepared.at >= state.heldUntil || severity(now) >= severity(state.held)) state.held = now;
        state.heldUntil = Math.max(state.heldUntil, prepared.at + this.#config.holdMs);
      }
      action = worse(action, now);
      if (prepared.at < state.heldUntil) action = worse(action, state.held);
    }
    return this.#finish(verdicts, action);
  }

  #finish(verdicts: Verdict[], action: Action): ObserveResult {
    for (const v of verdicts) this.#verdictCounts[v.detector as DetectorName]++;
    this.#actionCounts[action]++;
    return { verdicts, action };
  }

  /** The most severe action of the rules matched by one scope's verdicts. */
  #decide(verdicts: readonly Verdict[], scope: Scope): Action {
    if (verdicts.length === 0) return 'none';
    let action: Action = 'none';
    for (const rule of this.#config.rules) {
      if (rule.scope !== undefined && rule.scope !== scope) continue;
      if (verdicts.length < rule.minDetectors) continue;
      const hit = verdicts.some(
        (v) => (rule.detector === '*' || v.detector === rule.detector) && v.score >= rule.minScore,
      );
      if (hit) action = worse(action, rule.action);
    }
    return action;
  }

  /** Validates and pre-processes once for all scopes; null when the observation cannot be analysed. */
  #prepare(r: Observation): Prepared | null {
    const raw = r as Partial<Record<keyof Observation, unknown>>;
    if (typeof raw.principal !== 'string' || typeof raw.network !== 'string') return null;
    if (raw.organisation !== undefined && typeof raw.organisation !== 'string') return null;
    // Beyond ±8.64e15 ms there is no calendar date, which the off-hours check needs.
    if (typeof raw.at !== 'number' || !(Math.abs(raw.at) <= 8.64e15)) return null;
    if (raw.outputLabel !== undefined && typeof raw.outputLabel !== 'string') return null;
    let z: Float64Array | null = null;
    if (raw.features !== undefined) {
      if (!Array.isArray(raw.features)) return null;
      const f = raw.features as unknown[];
      const dims = this.#dims ?? f.length;
      if (f.length !== dims || dims === 0 || dims > this.#config.maxFeatureDims) return null;
      z = new Float64Array(dims);
      const { mean, scale } = this.#config;
      for (let i = 0; i < dims; i++) {
        const v = f[i];
        if (typeof v !== 'number' || !Number.isFinite(v)) return null;
        z[i] = mean === null || scale === null ? v : (v - (mean[i] ?? 0)) / (scale[i] ?? 1);
        if (!Number.isFinite(z[i])) return null;
      }
      this.#dims = dims;
    }
    let sim = null;
    let terms: Uint32Array | null = null;
    if (raw.text !== undefined) {
      if (typeof raw.text !== 'string') return null;
      const tokens = tokenize(raw.text, this.#config.maxTextWords);
      if (tokens.length > 0) {
        sim = simHash(tokens);
        terms = Uint32Array.from(new Set(tokens.map((t) => hash32(t, 0x7e2a))));
      }
    }
    return {
      at: raw.at,
      z,
      label: r.outputLabel,
      sim,
      terms,
      offHours: this.#clock?.isOffHours(raw.at, r.organisation) ?? null,
    };
  }

  stats(): ExtractionStats {
    let approxBytes = 0;
    for (const scope of SCOPES) for (const s of this.#scopes[scope].values()) approxBytes += s.bytes();
    return {
      observations: this.#observations,
      malformed: this.#malformed,
      tracked: {
        principal: this.#scopes.principal.size,
        network: this.#scopes.network.size,
        organisation: this.#scopes.organisation.size,
      },
      caps: { ...this.#config.caps },
      evictions: {
        principal: this.#scopes.principal.evictions,
        network: this.#scopes.network.evictions,
        organisation: this.#scopes.organisation.evictions,
      },
      verdicts: { ...this.#verdictCounts },
      actions: { ...this.#actionCounts },
      approxBytes,
    };
  }
}

import { fmix32, hamming, type Mulberry32, type SimHash } from './hashing.ts';
import { ShapiroWilkError, shapiroWilkCoefficients, shapiroWilkSorted } from './shapiro-wilk.ts';
import type {
  BoundaryParams,
  BurstParams,
  CoverageParams,
  NearDuplicateParams,
  OffHoursParams,
  PradaParams,
} from './types.ts';

/** One observation after the monitor has validated and pre-processed it (shared by all scopes). */
export interface Prepared {
  readonly at: number;
  /** Standardised features. */
  readonly z: Float64Array | null;
  readonly label: string | undefined;
  readonly sim: SimHash | null;
  /** Distinct hashes of the prompt's words. */
  readonly terms: Uint32Array | null;
  /** Null when business hours are not configured. */
  readonly offHours: boolean | null;
}

export interface Finding {
  readonly score: number;
  readonly reason: string;
}

export function euclidean(a: Float64Array, b: Float64Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) {
    const d = (a[i] ?? 0) - (b[i] ?? 0);
    s += d * d;
  }
  return Math.sqrt(s);
}

const round = (x: number, digits = 3): string => (Number.isFinite(x) ? x.toFixed(digits) : String(x));

/** Bytes of a JS object and map-entry header, for the rough memory accounting of `stats()`. */
const OBJECT_OVERHEAD = 64;

/**
 * Shared source of Shapiro–Wilk coefficients: they depend on n only, every PRADA window that is full tests
 * at the same n, and the ones still filling up walk through the same sizes. Bounded by the total number of
 * coefficients held (least recently used sizes go first).
 */
export class CoefficientCache {
  readonly #cache = new Map<number, Float64Array>();
  readonly #maxValues: number;
  #values = 0;
  constructor(maxValues: number) {
    this.#maxValues = maxValues;
  }
  get(n: number): Float64Array {
    let a = this.#cache.get(n);
    if (a !== undefined) {
      this.#cache.delete(n);
    } else {
      a = shapiroWilkCoefficients(n);
      this.#values += a.length;
      for (const [key, old] of this.#cache) {
        if (this.#values <= this.#maxValues) break;
        this.#cache.delete(key);
        this.#values -= old.length;
      }
    }
    this.#cache.set(n, a);
    return a;
  }
}

interface GrowingClass {
  readonly points: Float64Array[];
  /** Points ever admitted, for reservoir replacement once `points` is full. */
  admitted: number;
  threshold: number;
  /** Welford running mean / sum of squares of the distances admitted to this class's growing set. */
  count: number;
  mean: number;
  m2: number;
}

/**
 * PRADA (Juuti, Szyller, Marchal, Asokan, EuroS&P 2019), Algorithm 1. Per predicted class c, a growing set
 * G_c of the client's queries and a threshold T_c. Each new query x with label c gets its minimum distance
 * d to G_c, which joins the distance set D; if d > T_c, x joins G_c, d joins D_c and
 * T_c = max(T_c, mean(D_c) − std(D_c)). Once |D| reaches the minimum, the Shapiro–Wilk W of D below δ raises
 * the alarm: natural queries give roughly normally distributed minimum distances, synthetic ones (small
 * perturbations of seeds, line searches, grids) do not.
 *
 * Bounded memory: G_c keeps at most `maxGrowingSet` points by reservoir sampling (a uniform sample of all
 * points admitted), D is the window of the `maxDistances` latest distances, and at most `maxClasses`
 * classes are tracked (later classes share an overflow class).
 */
export class PradaDetector {
  readonly #p: PradaParams;
  readonly #rng: Mulberry32;
  readonly #coefficients: CoefficientCache;
  readonly #classes = new Map<string, GrowingClass>();
  readonly #distances: Float64Array;
  /** The same window kept sorted, so that each test is O(n) rather than a sort. */
  readonly #sorted: Float64Array;
  #next = 0;
  #filled = 0;

  constructor(params: PradaParams, rng: Mulberry32, coefficients: CoefficientCache) {
    this.#p = params;
    this.#rng = rng;
    this.#coefficients = coefficients;
    this.#distances = new Float64Array(params.maxDistances);
    this.#sorted = new Float64Array(params.maxDistances);
  }

  /** Index of the first sorted element >= v among the first `filled`. */
  #lowerBound(v: number): number {
    let lo = 0;
    let hi = this.#filled;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((this.#sorted[mid] ?? 0) < v) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  #record(d: number): void {
    if (this.#filled === this.#distances.length) {
      const old = this.#distances[this.#next] ?? 0;
      const at = this.#lowerBound(old);
      this.#sorted.copyWithin(at, at + 1, this.#filled);
      this.#filled--;
    }
    const at = this.#lowerBound(d);
    this.#sorted.copyWithin(at + 1, at, this.#filled);
    this.#sorted[at] = d;
    this.#filled++;
    this.#distances[this.#next] = d;
    this.#next = (this.#next + 1) % this.#distances.length;
  }

  #classOf(label: string): GrowingClass {
    let c = this.#classes.get(label);
    if (c === undefined) {
      const key = this.#classes.size < this.#p.maxClasses - 1 ? label : '\u0000overflow';
      c = this.#classes.get(key);
      if (c === undefined) {
        c = { points: [], admitted: 0, threshold: 0, count: 0, mean: 0, m2: 0 };
        this.#classes.set(key, c);
      }
    }
    return c;
  }

  #admit(c: GrowingClass, z: Float64Array): void {
    c.admitted++;
    if (c.points.length < this.#p.maxGrowingSet) {
      c.points.push(z);
      return;
    }
    const slot = Math.floor(this.#rng.next() * c.admitted);
    if (slot < c.points.length) c.points[slot] = z;
  }

  observe(q: Prepared): Finding | null {
    if (q.z === null) return null;
    const c = this.#classOf(q.label ?? '');
    if (c.points.length === 0) {
      this.#admit(c, q.z);
      return null;
    }
    let dmin = Number.POSITIVE_INFINITY;
    for (const y of c.points) {
      const d = euclidean(q.z, y);
      if (d < dmin) dmin = d;
    }
    this.#record(dmin);
    if (dmin > c.threshold) {
      this.#admit(c, q.z);
      c.count++;
      const delta = dmin - c.mean;
      c.mean += delta / c.count;
      c.m2 += delta * (dmin - c.mean);
      const std = c.count > 1 ? Math.sqrt(c.m2 / (c.count - 1)) : 0;
      c.threshold = Math.max(c.threshold, c.mean - std);
    }
    if (this.#filled < this.#p.minQueries) return null;
    const sample = this.#sorted.subarray(0, this.#filled);
    let w: number;
    try {
      w = shapiroWilkSorted(sample, this.#coefficients.get(sample.length)).w;
    } catch (error) {
      // A constant distance set (e.g. one repeated query) has no defined W; the near-duplicate detector
      // is the one that speaks to repetition.
      if (error instanceof ShapiroWilkError && error.code === 'zero_range') return null;
      throw error;
    }
    if (w >= this.#p.delta) return null;
    return {
      score: (1 - w) / (1 - this.#p.delta),
      reason: `minimum-distance set of ${sample.length} queries is not normal: W=${round(w)} < δ=${this.#p.delta}`,
    };
  }

  bytes(): number {
    let b = 2 * this.#distances.byteLength + OBJECT_OVERHEAD;
    for (const c of this.#classes.values()) {
      b += OBJECT_OVERHEAD;
      for (const p of c.points) b += p.byteLength + OBJECT_OVERHEAD;
    }
    return b;
  }
}

/**
 * Bursts: an exponentially decayed count with a short time constant estimates the current rate, one with a
 * long time constant the principal's baseline. Fires when the current rate exceeds both the floor and
 * `ratio` times the baseline. O(1) memory and exact for out-of-order timestamps (they count as "now").
 */
export class BurstDetector {
  readonly #p: BurstParams;
  #last = Number.NEGATIVE_INFINITY;
  #short = 0;
  #long = 0;

  constructor(params: BurstParams) {
    this.#p = params;
  }

  observe(q: Prepared): Finding | null {
    const dt = this.#last === Number.NEGATIVE_INFINITY ? 0 : Math.max(0, q.at - this.#last);
    this.#last = Math.max(this.#last, q.at);
    this.#short = this.#short * Math.exp(-dt / this.#p.shortWindowMs) + 1;
    this.#long = this.#long * Math.exp(-dt / this.#p.baselineWindowMs) + 1;
    const rate = (this.#short / this.#p.shortWindowMs) * 60_000;
    const baseline = (this.#long / this.#p.baselineWindowMs) * 60_000;
    const allowed = Math.max(this.#p.floorPerMinute, this.#p.ratio * baseline);
    const score = allowed > 0 ? rate / allowed : Number.POSITIVE_INFINITY;
    if (score < 1) return null;
    return {
      score,
      reason: `rate ${round(rate, 1)}/min exceeds max(floor ${this.#p.floorPerMinute}/min, ${this.#p.ratio}× baseline ${round(baseline, 2)}/min)`,
    };
  }

  bytes(): number {
    return OBJECT_OVERHEAD;
  }
}

/** The fraction of flagged events among the last `size` events. */
class FractionWindow {
  readonly #flags: Uint8Array;
  #next = 0;
  #filled = 0;
  #sum = 0;
  constructor(size: number) {
    this.#flags = new Uint8Array(size);
  }
  push(flag: boolean): void {
    if (this.#filled === this.#flags.length) this.#sum -= this.#flags[this.#next] ?? 0;
    else this.#filled++;
    this.#flags[this.#next] = flag ? 1 : 0;
    this.#sum += flag ? 1 : 0;
    this.#next = (this.#next + 1) % this.#flags.length;
  }
  get filled(): number {
    return this.#filled;
  }
  get fraction(): number {
    return this.#filled === 0 ? 0 : this.#sum / this.#filled;
  }
  bytes(): number {
    return this.#flags.byteLength + OBJECT_OVERHEAD;
  }
}

/** The nearest earlier query of the same scope, by features and by prompt. */
export interface Neighbours {
  readonly featureDistance: number;
  readonly featureLabel: string | undefined;
  readonly textBits: number;
  readonly textLabel: string | undefined;
}

interface WindowEntry {
  readonly z: Float64Array | null;
  readonly sim: SimHash | null;
  readonly label: string | undefined;
}

/** The latest `size` queries of a scope, searched linearly (size is small and the data high-dimensional). */
export class NeighbourWindow {
  readonly #entries: (WindowEntry | undefined)[];
  #next = 0;

  constructor(size: number) {
    this.#entries = new Array<WindowEntry | undefined>(size);
  }

  nearest(q: Prepared): Neighbours {
    let featureDistance = Number.POSITIVE_INFINITY;
    let featureLabel: string | undefined;
    let textBits = Number.POSITIVE_INFINITY;
    let textLabel: string | undefined;
    for (const e of this.#entries) {
      if (e === undefined) continue;
      if (q.z !== null && e.z !== null && e.z.length === q.z.length) {
        const d = euclidean(q.z, e.z);
        if (d < featureDistance) {
          featureDistance = d;
          featureLabel = e.label;
        }
      }
      if (q.sim !== null && e.sim !== null) {
        const h = hamming(q.sim, e.sim);
        if (h < textBits) {
          textBits = h;
          textLabel = e.label;
        }
      }
    }
    return { featureDistance, featureLabel, textBits, textLabel };
  }

  add(q: Prepared): void {
    this.#entries[this.#next] = { z: q.z, sim: q.sim, label: q.label };
    this.#next = (this.#next + 1) % this.#entries.length;
  }

  bytes(): number {
    let b = this.#entries.length * 8 + OBJECT_OVERHEAD;
    for (const e of this.#entries) if (e !== undefined) b += OBJECT_OVERHEAD + (e.z?.byteLength ?? 0) + 32;
    return b;
  }
}

/**
 * Near-duplicates: the fraction of recent queries that have an earlier query of the same scope within
 * `featureRadius` (standardised Euclidean) or `textBits` (SimHash Hamming distance). Extraction by
 * perturbation and line search produces long runs of near-identical inputs; people rarely do.
 */
export class NearDuplicateDetector {
  readonly #p: NearDuplicateParams;
  readonly #window: FractionWindow;
  constructor(params: NearDuplicateParams) {
    this.#p = params;
    this.#window = new FractionWindow(params.fractionWindow);
  }

  observe(q: Prepared, nn: Neighbours): Finding | null {
    if (q.z === null && q.sim === null) return null;
    this.#window.push(nn.featureDistance <= this.#p.featureRadius || nn.textBits <= this.#p.textBits);
    if (this.#window.filled < this.#p.minQueries) return null;
    const f = this.#window.fraction;
    const score = f / this.#p.maxFraction;
    if (score < 1) return null;
    return {
      score,
      reason: `${round(f * 100, 1)}% of the last ${this.#window.filled} queries are near-duplicates (limit ${round(this.#p.maxFraction * 100, 1)}%)`,
    };
  }

  bytes(): number {
    return this.#window.bytes() + OBJECT_OVERHEAD;
  }
}

/**
 * Boundary probing: the fraction of labelled queries whose nearest earlier query is close (within
 * `featureRadius` or `textBits`) but got a different label. Line searches and perturbation attacks straddle
 * the decision boundary on purpose; natural inputs are rarely close to each other, let alone on both sides.
 */
export class BoundaryDetector {
  readonly #p: BoundaryParams;
  readonly #window: FractionWindow;
  constructor(params: BoundaryParams) {
    this.#p = params;
    this.#window = new FractionWindow(params.fractionWindow);
  }

  observe(q: Prepared, nn: Neighbours): Finding | null {
    if (q.label === undefined || (q.z === null && q.sim === null)) return null;
    const featureFlip = nn.featureDistance <= this.#p.featureRadius && nn.featureLabel !== q.label;
    const textFlip = nn.textBits <= this.#p.textBits && nn.textLabel !== q.label;
    this.#window.push(featureFlip || textFlip);
    if (this.#window.filled < this.#p.minQueries) return null;
    const f = this.#window.fraction;
    const score = f / this.#p.maxFraction;
    if (score < 1) return null;
    return {
      score,
      reason: `${round(f * 100, 1)}% of the last ${this.#window.filled} labelled queries flip the label of a near neighbour (limit ${round(this.#p.maxFraction * 100, 1)}%)`,
    };
  }

  bytes(): number {
    return this.#window.bytes() + OBJECT_OVERHEAD;
  }
}

/** Keys with a last-seen time, oldest first; expired and surplus keys dropped from the front. */
class RecencySet {
  readonly #seen = new Map<number, number>();
  readonly #capacity: number;
  readonly #horizon: number;
  constructor(capacity: number, horizon: number) {
    this.#capacity = capacity;
    this.#horizon = horizon;
  }
  touch(key: number, at: number): void {
    this.#seen.delete(key);
    this.#seen.set(key, at);
    if (this.#seen.size > this.#capacity) {
      const oldest = this.#seen.keys().next();
      if (oldest.done !== true) this.#seen.delete(oldest.value);
    }
  }
  expire(now: number): void {
    for (const [key, at] of this.#seen) {
      if (now - at <= this.#horizon) break;
      this.#seen.delete(key);
    }
  }
  get size(): number {
    return this.#seen.size;
  }
  bytes(): number {
    return this.#seen.size * 40 + OBJECT_OVERHEAD;
  }
}

/**
 * Input-space coverage: how many distinct quantisation cells (standardised features cut into `binWidth`
 * bins, tails clamped at ±clamp) or distinct prompt words a scope visited within the horizon. Benign use
 * concentrates where the data lives and saturates; extraction must cover the space, so the count keeps
 * growing. Each set is capped at twice its budget (the score saturates at 2).
 */
export class CoverageDetector {
  readonly #p: CoverageParams;
  readonly #cells: RecencySet;
  readonly #terms: RecencySet;
  #last = Number.NEGATIVE_INFINITY;

  constructor(params: CoverageParams) {
    this.#p = params;
    this.#cells = new RecencySet(2 * params.featureCellBudget, params.horizonMs);
    this.#terms = new RecencySet(2 * params.textTermBudget, params.horizonMs);
  }

  #cellOf(z: Float64Array): number {
    const c = this.#p.clamp;
    const bins = Math.ceil((2 * c) / this.#p.binWidth);
    let h = 0x2545f491;
    for (let i = 0; i < z.length; i++) {
      const v = Math.min(c, Math.max(-c, z[i] ?? 0));
      const bin = Math.min(bins - 1, Math.floor((v + c) / this.#p.binWidth));
      h = fmix32(Math.imul(h ^ bin, 0x01000193) + i);
    }
    return h;
  }

  observe(q: Prepared): Finding | null {
    this.#last = Math.max(this.#last, q.at);
    this.#cells.expire(this.#last);
    this.#terms.expire(this.#last);
    if (q.z !== null) this.#cells.touch(this.#cellOf(q.z), this.#last);
    if (q.terms !== null) for (const t of q.terms) this.#terms.touch(t, this.#last);
    const cellScore = this.#cells.size / this.#p.featureCellBudget;
    const termScore = this.#terms.size / this.#p.textTermBudget;
    if (cellScore >= 1 && cellScore >= termScore) {
      return {
        score: cellScore,
        reason: `${this.#cells.size} distinct input cells within the horizon (budget ${this.#p.featureCellBudget})`,
      };
    }
    if (termScore >= 1) {
      return {
        score: termScore,
        reason: `${this.#terms.size} distinct prompt terms within the horizon (budget ${this.#p.textTermBudget})`,
      };
    }
    return null;
  }

  bytes(): number {
    return this.#cells.bytes() + this.#terms.bytes() + OBJECT_OVERHEAD;
  }
}

/** Off-hours use: an exponentially decayed count of queries outside business hours against an allowance. */
export class OffHoursDetector {
  readonly #p: OffHoursParams;
  #last = Number.NEGATIVE_INFINITY;
  #count = 0;

  constructor(params: OffHoursParams) {
    this.#p = params;
  }

  observe(q: Prepared): Finding | null {
    if (q.offHours === null) return null;
    const dt = this.#last === Number.NEGATIVE_INFINITY ? 0 : Math.max(0, q.at - this.#last);
    this.#last = Math.max(this.#last, q.at);
    this.#count *= Math.exp(-dt / this.#p.windowMs);
    if (!q.offHours) return null;
    this.#count += 1;
    const score = this.#count / this.#p.allowance;
    if (score < 1) return null;
    return {
      score,
      reason: `${round(this.#count, 1)} queries outside business hours within ~${round(this.#p.windowMs / 60_000, 0)} min (allowance ${this.#p.allowance})`,
    };
  }

  bytes(): number {
    return OBJECT_OVERHEAD;
  }
}

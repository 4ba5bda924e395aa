import { normalQuantile, normalSf } from './normal.ts';

/**
 * The Shapiro–Wilk W test of normality, Royston's approximation (Royston 1992, "Approximating the
 * Shapiro-Wilk W-test for non-normality", and algorithm AS R94, Applied Statistics 44(4), 1995) for
 * 3 <= n <= 5000. W is the squared correlation between the ordered sample and the approximate expected
 * normal order statistics; small W means the sample is not normal.
 */

export const SHAPIRO_WILK_MIN_N = 3;
export const SHAPIRO_WILK_MAX_N = 5000;

export interface ShapiroWilkResult {
  /** The statistic, in (0, 1]. */
  readonly w: number;
  /** Royston's normal approximation of P(W' <= W) under normality. */
  readonly pValue: number;
}

export type ShapiroWilkErrorCode = 'sample_size' | 'non_finite' | 'zero_range' | 'unsorted';

/** Raised for inputs the test is not defined for; `code` is stable. */
export class ShapiroWilkError extends Error {
  readonly code: ShapiroWilkErrorCode;
  constructor(code: ShapiroWilkErrorCode, message: string) {
    super(message);
    this.name = 'ShapiroWilkError';
    this.code = code;
  }
}

const C1 = [0, 0.221157, -0.147981, -2.07119, 4.434685, -2.706056] as const;
const C2 = [0, 0.042981, -0.293762, -1.752461, 5.682633, -3.582633] as const;
const C3 = [0.544, -0.39978, 0.025054, -6.714e-4] as const;
const C4 = [1.3822, -0.77857, 0.062767, -0.0020322] as const;
const C5 = [-1.5861, -0.31082, -0.083751, 0.0038915] as const;
const C6 = [-0.4803, -0.082676, 0.0030302] as const;
const G = [-2.273, 0.459] as const;

function poly(c: readonly number[], x: number): number {
  let r = 0;
  for (let i = c.length - 1; i >= 0; i--) r = r * x + (c[i] ?? 0);
  return r;
}

/**
 * The upper half of the antisymmetric coefficient vector, a[0] for the extremes inwards. Depends on n only,
 * so callers testing a fixed-size window repeatedly reuse it (the monitor caches it per n).
 */
export function shapiroWilkCoefficients(n: number): Float64Array {
  if (!Number.isInteger(n) || n < SHAPIRO_WILK_MIN_N || n > SHAPIRO_WILK_MAX_N) {
    throw new ShapiroWilkError('sample_size', `sample size must be an integer in [3, 5000]`);
  }
  const half = Math.floor(n / 2);
  const a = new Float64Array(half);
  if (n === 3) {
    a[0] = Math.SQRT1_2;
    return a;
  }
  // m holds the negative half of the approximate expected order statistics.
  const m = new Float64Array(half);
  let summ2 = 0;
  for (let i = 0; i < half; i++) {
    const q = normalQuantile((i + 1 - 0.375) / (n + 0.25));
    m[i] = q;
    summ2 += q * q;
  }
  summ2 *= 2;
  const ssumm2 = Math.sqrt(summ2);
  const rsn = 1 / Math.sqrt(n);
  const m0 = m[0] ?? 0;
  const a1 = poly(C1, rsn) - m0 / ssumm2;
  let first: number;
  let fac: number;
  if (n > 5) {
    const m1 = m[1] ?? 0;
    const a2 = -m1 / ssumm2 + poly(C2, rsn);
    fac = Math.sqrt((summ2 - 2 * m0 * m0 - 2 * m1 * m1) / (1 - 2 * a1 * a1 - 2 * a2 * a2));
    a[1] = a2;
    first = 2;
  } else {
    fac = Math.sqrt((summ2 - 2 * m0 * m0) / (1 - 2 * a1 * a1));
    first = 1;
  }
  a[0] = a1;
  for (let i = first; i < half; i++) a[i] = -(m[i] ?? 0) / fac;
  return a;
}

/**
 * W and its p-value for `sample` (any order; not modified). `coefficients` may be passed to skip their
 * computation when it was done for the same n.
 */
export function shapiroWilk(sample: ArrayLike<number>, coefficients?: Float64Array): ShapiroWilkResult {
  const n = sample.length;
  if (n < SHAPIRO_WILK_MIN_N || n > SHAPIRO_WILK_MAX_N) {
    throw new ShapiroWilkError('sample_size', `sample size must be in [3, 5000]`);
  }
  const x = Float64Array.from(sample);
  for (const v of x) {
    if (!Number.isFinite(v)) throw new ShapiroWilkError('non_finite', 'sample contains a non-finite value');
  }
  return shapiroWilkSorted(x.sort(), coefficients);
}

/**
 * As `shapiroWilk`, for a sample already sorted in ascending order (checked), without copying it: the
 * PRADA detector keeps its distance window sorted incrementally and tests it after every query.
 */
export function shapiroWilkSorted(x: Float64Array, coefficients?: Float64Array): ShapiroWilkResult {
  const n = x.length;
  if (n < SHAPIRO_WILK_MIN_N || n > SHAPIRO_WILK_MAX_N) {
    throw new ShapiroWilkError('sample_size', `sample size must be in [3, 5000]`);
  }
  const a = coefficients ?? shapiroWilkCoefficients(n);
  if (a.length !== Math.floor(n / 2))
    throw new ShapiroWilkError('sample_size', 'coefficients are for another n');
  for (let i = 0; i < n; i++) {
    const v = x[i] ?? Number.NaN;
    if (!Number.isFinite(v)) throw new ShapiroWilkError('non_finite', 'sample contains a non-finite value');
    if (i > 0 && v < (x[i - 1] ?? 0)) throw new ShapiroWilkError('unsorted', 'sample is not sorted');
  }
  const lo = x[0] ?? 0;
  const range = (x[n - 1] ?? 0) - lo;
  // Relative to the magnitude, so that large constant offsets are still seen as constant.
  if (!(range > 1e-12 * Math.max(1, Math.abs(lo)))) {
    throw new ShapiroWilkError('zero_range', 'sample has (numerically) zero range');
  }

  // Squared correlation between the ordered, range-scaled data and the antisymmetric coefficients (whose
  // mean is zero). 1 - W is formed as (√(SaSx) − Sax)(√(SaSx) + Sax)/(SaSx), as AS R94 does, so W close to
  // 1 in large samples keeps its precision.
  let meanX = 0;
  for (let i = 0; i < n; i++) meanX += ((x[i] ?? 0) - lo) / range;
  meanX /= n;
  let ssa = 0;
  let ssx = 0;
  let sax = 0;
  for (let i = 0; i < n; i++) {
    const j = n - 1 - i;
    const coef = i < j ? -(a[i] ?? 0) : i > j ? (a[j] ?? 0) : 0;
    const xs = ((x[i] ?? 0) - lo) / range - meanX;
    ssa += coef * coef;
    ssx += xs * xs;
    sax += coef * xs;
  }
  const root = Math.sqrt(ssa * ssx);
  const w1 = ((root - sax) * (root + sax)) / (ssa * ssx);
  const w = 1 - w1;
  return { w, pValue: pValueOf(w, w1, n) };
}

function pValueOf(w: number, w1: number, n: number): number {
  if (n === 3) {
    // Exact for n = 3: (6/π)(asin √W − asin √(3/4)).
    return Math.max(0, (6 / Math.PI) * (Math.asin(Math.sqrt(w)) - Math.PI / 3));
  }
  if (w1 <= 0) return 1;
  let y = Math.log(w1);
  let m: number;
  let s: number;
  if (n <= 11) {
    const gamma = poly(G, n);
    if (y >= gamma) return 1e-99;
    y = -Math.log(gamma - y);
    m = poly(C3, n);
    s = Math.exp(poly(C4, n));
  } else {
    const ln = Math.log(n);
    m = poly(C5, ln);
    s = Math.exp(poly(C6, ln));
  }
  return normalSf((y - m) / s);
}

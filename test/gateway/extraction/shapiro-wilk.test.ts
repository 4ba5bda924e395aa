import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  ShapiroWilkError,
  normalCdf,
  normalQuantile,
  shapiroWilk,
  shapiroWilkSorted,
} from '../../../src/gateway/extraction/index.ts';

// Reference values computed with SciPy 1.17.1 (scipy.stats.shapiro, which implements AS R94), from the same
// generating formulas.
const REFERENCE: readonly { name: string; sample: number[]; w: number; p: number }[] = [
  {
    name: 'heights (n = 11)',
    sample: [148, 154, 158, 160, 161, 162, 166, 170, 182, 195, 236],
    w: 0.7888146948631716,
    p: 0.006703814061898823,
  },
  { name: 'n = 3 (exact p)', sample: [1, 2, 4], w: 0.9642857142857142, p: 0.6368868450289689 },
  { name: 'n = 4', sample: [0.1, 0.5, 0.4, 2.0], w: 0.8059153929257188, p: 0.1132586087160184 },
  { name: 'n = 5', sample: [1, 2, 3, 4, 10], w: 0.8357883166461942, p: 0.1536125843490888 },
  {
    name: 'n = 8',
    sample: [2.1, 3.4, 1.9, 5.6, 4.4, 3.3, 2.8, 4.1],
    w: 0.9639247731413361,
    p: 0.8465465042829203,
  },
  {
    name: 'n = 20',
    sample: Array.from({ length: 20 }, (_, i) => Math.sin(i * 1.7) * 3 + i * 0.05),
    w: 0.9137765521215447,
    p: 0.07525094948416634,
  },
  {
    name: 'n = 100 (near-uniform)',
    sample: Array.from({ length: 100 }, (_, i) => ((i * 7919) % 1000) / 1000),
    w: 0.9525536838545866,
    p: 0.0012268003319822948,
  },
  {
    name: 'n = 500 (exponential)',
    sample: Array.from({ length: 500 }, (_, i) => -Math.log(1 - (((i * 104729) % 4999) + 0.5) / 5000)),
    w: 0.7064327949733283,
    p: 1.2257764500992082e-28,
  },
  {
    name: 'n = 5000 (uniform)',
    sample: Array.from({ length: 5000 }, (_, i) => (Number((BigInt(i) * 2654435761n) % 5003n) + 0.5) / 5003),
    w: 0.9548666631360802,
    p: 9.143226707059608e-37,
  },
];

describe('Shapiro–Wilk (AS R94)', () => {
  for (const r of REFERENCE) {
    it(`matches SciPy: ${r.name}`, () => {
      const got = shapiroWilk(r.sample);
      assert.ok(Math.abs(got.w - r.w) < 1e-8, `W ${got.w} vs ${r.w}`);
      assert.ok(Math.abs(got.pValue - r.p) <= 1e-6 * r.p + 1e-12, `p ${got.pValue} vs ${r.p}`);
    });
  }

  it('n = 3 with an equally spaced sample gives W = 1 and p = 1', () => {
    const { w, pValue } = shapiroWilk([1, 2, 3]);
    assert.ok(Math.abs(w - 1) < 1e-12);
    assert.ok(Math.abs(pValue - 1) < 1e-9);
  });

  it('W is close to 1 for expected normal order statistics and low for bimodal and uniform samples', () => {
    const n = 400;
    const normal = Array.from({ length: n }, (_, i) => normalQuantile((i + 0.5) / n));
    assert.ok(shapiroWilk(normal).w > 0.998);
    assert.ok(shapiroWilk(normal).pValue > 0.5);
    const bimodal = normal.map((x, i) => x * 0.2 + (i % 2 === 0 ? -3 : 3));
    assert.ok(shapiroWilk(bimodal).w < 0.8);
    const uniform = Array.from({ length: n }, (_, i) => i / n);
    assert.ok(shapiroWilk(uniform).w < 0.97);
    assert.ok(shapiroWilk(uniform).pValue < 1e-6);
  });

  it('property: W in (0, 1], invariant under order and positive affine maps', () => {
    fc.assert(
      fc.property(
        fc.array(fc.double({ min: -1e6, max: 1e6, noNaN: true }), { minLength: 3, maxLength: 200 }),
        fc.double({ min: 1e-3, max: 1e3, noNaN: true }),
        fc.double({ min: -1e3, max: 1e3, noNaN: true }),
        (xs, a, b) => {
          const lo = Math.min(...xs);
          const hi = Math.max(...xs);
          fc.pre(hi - lo > 1e-6 * Math.max(1, Math.abs(lo)));
          // The mapped sample must keep a spread well above double rounding of its offset, or W is noise.
          fc.pre(a * (hi - lo) > 1e-6 * Math.max(1, Math.abs(a * lo + b), Math.abs(a * hi + b)));
          const r = shapiroWilk(xs);
          assert.ok(r.w > 0 && r.w <= 1 + 1e-12, `W = ${r.w}`);
          assert.ok(r.pValue >= 0 && r.pValue <= 1);
          const moved = shapiroWilk([...xs].reverse().map((x) => a * x + b));
          assert.ok(Math.abs(moved.w - r.w) < 1e-6);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('rejects samples it is not defined for, with stable codes', () => {
    const code = (f: () => unknown): string => {
      try {
        f();
      } catch (e) {
        assert.ok(e instanceof ShapiroWilkError);
        return e.code;
      }
      return 'none';
    };
    assert.equal(
      code(() => shapiroWilk([1, 2])),
      'sample_size',
    );
    assert.equal(
      code(() => shapiroWilk(new Array<number>(5001).fill(0).map((_, i) => i))),
      'sample_size',
    );
    assert.equal(
      code(() => shapiroWilk([1, Number.NaN, 3])),
      'non_finite',
    );
    assert.equal(
      code(() => shapiroWilk([1, Number.POSITIVE_INFINITY, 3])),
      'non_finite',
    );
    assert.equal(
      code(() => shapiroWilk([5, 5, 5, 5])),
      'zero_range',
    );
    assert.equal(
      code(() => shapiroWilk([1e9, 1e9, 1e9 + 1e-9])),
      'zero_range',
    );
    assert.equal(
      code(() => shapiroWilkSorted(Float64Array.from([3, 1, 2]))),
      'unsorted',
    );
  });
});

describe('normal distribution helpers', () => {
  it('match SciPy reference values', () => {
    // scipy.stats.norm.ppf / norm.cdf
    const q: [number, number][] = [
      [1e-10, -6.361340902404056],
      [0.001, -3.090232306167813],
      [0.02, -2.053748910631823],
      [0.3, -0.5244005127080409],
      [0.9, 1.2815515655446004],
      [0.999999999999, 7.0344869100478356],
    ];
    for (const [p, x] of q)
      assert.ok(Math.abs(normalQuantile(p) - x) < 1e-9 * Math.max(1, Math.abs(x)), `ppf(${p})`);
    const c: [number, number][] = [
      [-10, 7.61985302416047e-24],
      [-5, 2.866515718791933e-7],
      [-1, 0.15865525393145707],
      [0.5, 0.6914624612740131],
      [3, 0.9986501019683699],
    ];
    for (const [x, p] of c) assert.ok(Math.abs(normalCdf(x) - p) <= 1e-8 * p, `cdf(${x})`);
    assert.equal(normalQuantile(0.5), 0);
    assert.equal(normalQuantile(0), Number.NEGATIVE_INFINITY);
    assert.ok(Number.isNaN(normalQuantile(1.5)));
  });
});

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ACTIONS, ExtractionMonitor } from '../../../src/gateway/extraction/index.ts';

const observation = fc.record(
  {
    principal: fc.string({ maxLength: 6 }),
    network: fc.constantFrom('a/24', 'b/24', 'c/24', 'd/24', ''),
    organisation: fc.option(fc.constantFrom('o1', 'o2', 'o3', 'o4'), { nil: undefined }),
    at: fc.oneof(fc.integer({ min: 1_700_000_000_000, max: 1_700_100_000_000 }), fc.double()),
    features: fc.option(
      fc.oneof(
        fc.array(fc.double({ min: -1e6, max: 1e6, noNaN: true }), { minLength: 3, maxLength: 3 }),
        fc.array(fc.double(), { maxLength: 5 }),
      ),
      { nil: undefined },
    ),
    text: fc.option(fc.string({ maxLength: 200 }), { nil: undefined }),
    outputLabel: fc.option(fc.constantFrom('yes', 'no', 'maybe', ''), { nil: undefined }),
  },
  { requiredKeys: ['principal', 'network', 'at'] },
);

describe('bounded memory and robustness', () => {
  it('property: arbitrary observation sequences never throw and state stays within the caps', () => {
    fc.assert(
      fc.property(fc.array(observation, { maxLength: 300 }), (observations) => {
        const m = new ExtractionMonitor({
          caps: { principals: 5, networks: 3, organisations: 2 },
          neighbourWindow: 16,
          detectors: {
            prada: { minQueries: 5, maxDistances: 20, maxGrowingSet: 8, maxClasses: 2 },
            coverage: { featureCellBudget: 10, textTermBudget: 20 },
            'near-duplicate': { minQueries: 3, fractionWindow: 10 },
          },
          businessHours: { timeZone: 'America/New_York', start: '09:00', end: '17:00' },
        });
        for (const o of observations) {
          const r = m.observe(o);
          assert.ok(ACTIONS.includes(r.action));
          for (const v of r.verdicts) assert.ok(v.score >= 1 && !Number.isNaN(v.score));
          const s = m.stats();
          assert.ok(s.tracked.principal <= 5 && s.tracked.network <= 3 && s.tracked.organisation <= 2);
        }
        const s = m.stats();
        assert.equal(s.observations, observations.length);
        assert.equal(
          Object.values(s.actions).reduce((a, b) => a + b, 0),
          observations.length,
        );
      }),
      { numRuns: 150 },
    );
  });

  it('evicts least recently used principals and keeps per-scope state bounded under a flood', () => {
    const m = new ExtractionMonitor({ caps: { principals: 100, networks: 10, organisations: 5 } });
    let t = 1_700_000_000_000;
    for (let i = 0; i < 3000; i++) {
      const features = [Math.sin(i), Math.cos(i * 1.3), (i % 17) / 17];
      m.observe({
        principal: `p${i % 1000}`,
        network: `n${i % 50}`,
        organisation: `o${i % 20}`,
        at: (t += 250),
        features,
        outputLabel: i % 3 === 0 ? 'a' : 'b',
      });
    }
    const s = m.stats();
    assert.deepEqual(s.tracked, { principal: 100, network: 10, organisation: 5 });
    assert.equal(s.evictions.principal, 900 + (3000 - 1000));
    // The hot principal survives: recently used keys are not evicted.
    const before = m.stats().evictions.principal;
    m.observe({ principal: 'p999', network: 'n49', at: (t += 250), text: 'x' });
    assert.equal(m.stats().evictions.principal, before);

    // One principal hammering for a long time: its state stops growing once its windows and sets are full.
    const one = new ExtractionMonitor({});
    const sizes: number[] = [];
    // Long enough to saturate every window, reservoir and set.
    for (let i = 0; i < 6000; i++) {
      one.observe({
        principal: 'p',
        network: 'n',
        at: (t += 1000),
        features: [Math.sin(i * 0.7) * 3, Math.cos(i * 0.11) * 5, i % 13],
        outputLabel: String(i % 40),
        text: `prompt ${i} about topic ${i % 997} and ${i % 991}`,
      });
      if (i === 5999) sizes.push(one.stats().approxBytes);
    }
    // Defaults, 3 features: the worst-case formula of docs/extraction-detection.md gives ~610 KiB for a
    // principal plus its network (text-term sets dominate), whatever the number of queries.
    assert.ok(sizes[0]! < 610 * 1024, `${sizes[1]} bytes for two scopes`);
  });
});

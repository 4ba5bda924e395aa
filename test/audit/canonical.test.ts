import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { canonicalJson } from '../../src/audit/canonical.ts';

describe('canonical JSON', () => {
  it('sorts members, drops undefined, and has no whitespace', () => {
    assert.equal(
      canonicalJson({ b: 1, a: { d: [true, null, 'x'], c: 'é\n' }, u: undefined }),
      '{"a":{"c":"é\\n","d":[true,null,"x"]},"b":1}',
    );
  });

  it('matches RFC 8785 examples for the value kinds events use', () => {
    assert.equal(
      canonicalJson({ '\u20ac': 'Euro Sign', '\r': 'Carriage Return', '1': 'One' }),
      '{"\\r":"Carriage Return","1":"One","€":"Euro Sign"}',
    );
    assert.equal(
      canonicalJson([-0, 1e21, 0.000001, 333333333.3333333]),
      '[0,1e+21,0.000001,333333333.3333333]',
    );
  });

  it('is stable under key order and round-trips through JSON.parse', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (v) => {
        const text = canonicalJson(v);
        assert.equal(canonicalJson(JSON.parse(text)), text);
      }),
      { numRuns: 300 },
    );
  });

  it('refuses values JSON cannot carry', () => {
    assert.throws(() => canonicalJson(Number.NaN));
    assert.throws(() => canonicalJson(() => 1));
  });
});

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { CompiledPolicy, PrivacyEngine } from '../../src/privacy/index.ts';
import { OutputFilter } from '../../src/gateway/index.ts';

const filter = new OutputFilter(new PrivacyEngine(), new CompiledPolicy({ defaultAction: 'redact' }));

describe('output filter on tensors', () => {
  it('passes numeric KServe outputs through untouched, with no findings', () => {
    const body = {
      outputs: [
        {
          name: 'p',
          datatype: 'FP32',
          shape: [2, 2],
          data: [
            [0.1, 0.9],
            [1, 2],
          ],
        },
      ],
    };
    const r = filter.filterJson('kserve-v2', structuredClone(body));
    assert.deepEqual(r.body, body);
    assert.equal(r.counts.size, 0);
    assert.equal(r.blocked, false);
  });

  it('scans every string leaf whatever the declared datatype', () => {
    const body = {
      outputs: [{ name: 'x', datatype: 'FP32', shape: [2], data: [0.5, 'mail jane.doe@example.com'] }],
    };
    const r = filter.filterJson('kserve-v2', body);
    const [output] = (r.body as { outputs: { data: unknown[] }[] }).outputs;
    assert.ok(output !== undefined);
    assert.equal(output.data[0], 0.5);
    assert.ok(!String(output.data[1]).includes('jane.doe@example.com'));
    assert.equal(r.counts.get('EMAIL:redact'), 1);
  });

  it('blocks output nested deeper than it scans', () => {
    let deep: unknown = 'jane.doe@example.com';
    for (let i = 0; i < 40; i++) deep = [deep];
    const r = filter.filterJson('predict', { predictions: deep });
    assert.equal(r.blocked, true);
  });

  it('never changes number/boolean tensors (property)', () => {
    const tensor = fc.letrec((tie) => ({
      leaf: fc.oneof(fc.double({ noNaN: true }), fc.integer(), fc.boolean()),
      node: fc.oneof({ depthSize: 'small' }, tie('leaf'), fc.array(tie('node'), { maxLength: 5 })),
    })).node;
    fc.assert(
      fc.property(fc.array(tensor, { maxLength: 8 }), (predictions) => {
        const r = filter.filterJson('predict', { predictions: structuredClone(predictions) });
        assert.deepEqual((r.body as { predictions: unknown }).predictions, predictions);
        assert.equal(r.counts.size, 0);
        assert.equal(r.blocked, false);
      }),
    );
  });
});

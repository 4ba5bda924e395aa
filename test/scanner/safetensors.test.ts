import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { scanBuffer } from '../../src/scanner/index.ts';
import { JsonObject, parseJson, JsonSyntaxError } from '../../src/scanner/json.ts';
import { check, makeSamples, ruleIds } from './helpers.ts';

let dir = '';
let cleanup = (): void => undefined;
before(() => {
  ({ dir, cleanup } = makeSamples());
});
after(() => {
  cleanup();
});

function st(header: string, data: Uint8Array = new Uint8Array(0)): Buffer {
  const h = Buffer.from(header);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(h.length));
  return Buffer.concat([len, h, data]);
}

describe('safetensors', () => {
  it('valid files (with metadata, with empty and BF16 tensors) are clean', async () => {
    await check(dir, 'st/valid.safetensors', { verdict: 'clean', format: 'safetensors' });
    await check(dir, 'st/empty_tensor.safetensors', { verdict: 'clean' });
  });

  const bad: [string, string][] = [
    ['overlap', 'safetensors.layout'],
    ['gap', 'safetensors.layout'],
    ['trailing', 'safetensors.trailing-bytes'],
    ['duplicate', 'safetensors.duplicate-key'],
    ['wrong_size', 'safetensors.size-mismatch'],
    ['bad_dtype', 'safetensors.invalid-tensor'],
    ['negative_shape', 'safetensors.invalid-tensor'],
    ['huge_header', 'safetensors.header-too-large'],
    ['past_end', 'safetensors.header-too-large'],
    ['not_json', 'safetensors.malformed-header'],
    ['bad_utf8', 'safetensors.malformed-header'],
    ['bad_metadata', 'safetensors.invalid-metadata'],
  ];
  for (const [name, rule] of bad) {
    it(`${name}: ${rule}`, async () => {
      await check(dir, `st/${name}.safetensors`, { verdict: 'suspicious', rules: [rule] });
    });
  }

  it('a __proto__ tensor name is a plain key: nothing is polluted', async () => {
    const r = await check(dir, 'st/proto.safetensors', {
      verdict: 'clean',
      rules: ['safetensors.suspicious-key'],
    });
    assert.ok(r.findings.every((f) => f.rule !== 'safetensors.invalid-tensor'));
    const probe: Record<string, unknown> = {};
    assert.equal(probe['polluted'], undefined);
    assert.equal(probe['dtype'], undefined);
    assert.equal(Object.getPrototypeOf(probe), Object.prototype);
    assert.equal(Object.keys(Object.prototype).length, 0);
  });

  it('checks sub-byte dtypes bit-exactly and offsets beyond 2^53 exactly', async () => {
    // F4: 3 elements are 12 bits, not whole bytes.
    let r = await scanBuffer(st('{"a":{"dtype":"F4","shape":[3],"data_offsets":[0,2]}}', new Uint8Array(2)));
    assert.ok(ruleIds(r).includes('safetensors.invalid-tensor'));
    r = await scanBuffer(st('{"a":{"dtype":"F4","shape":[4],"data_offsets":[0,2]}}', new Uint8Array(2)));
    assert.equal(r.verdict, 'clean');
    r = await scanBuffer(
      st('{"a":{"dtype":"U8","shape":[1],"data_offsets":[9007199254740993,9007199254740994]}}'),
    );
    assert.ok(ruleIds(r).includes('safetensors.layout'));
  });

  it('rejects fractional and exponent numbers in shapes and offsets', async () => {
    const r = await scanBuffer(
      st('{"a":{"dtype":"U8","shape":[1.0],"data_offsets":[0,1e0]}}', new Uint8Array(1)),
    );
    assert.ok(ruleIds(r).includes('safetensors.invalid-tensor'));
  });
});

describe('strict JSON', () => {
  it('keeps __proto__ as a Map key and reports duplicates with their path', () => {
    const { value, duplicates } = parseJson('{"__proto__": {"x": 1, "x": 2}, "a": 1, "a": 2}');
    assert.ok(value instanceof JsonObject);
    assert.ok(value.map.has('__proto__'));
    assert.deepEqual(duplicates, ['__proto__.x', 'a']);
  });
  it('rejects what RFC 8259 rejects', () => {
    for (const bad of [
      '{a:1}',
      '[1,]',
      '01',
      '"\\x"',
      '"\u0001"',
      '{"a":1} x',
      '"\\ud800"',
      'NaN',
      '-',
      '',
    ]) {
      assert.throws(() => parseJson(bad), JsonSyntaxError, bad);
    }
    assert.deepEqual(parseJson(' [1, "\\u00e9\\ud83d\\ude00", true, null] ').duplicates, []);
  });
});

describe('fuzz: the safetensors parser never throws and always yields a verdict', () => {
  it('on arbitrary JSON headers', async () => {
    await fc.assert(
      fc.asyncProperty(fc.json({ maxDepth: 4 }), fc.uint8Array({ maxLength: 64 }), async (json, data) => {
        const r = await scanBuffer(st(`{"t":${json}}`, data));
        assert.ok(['clean', 'suspicious', 'malicious'].includes(r.verdict));
      }),
      { numRuns: 300 },
    );
  });

  it('on tensor-shaped headers with random numbers', async () => {
    const tensor = fc.record({
      dtype: fc.constantFrom('F32', 'F16', 'BF16', 'I64', 'U8', 'F4', 'BOOL', 'X'),
      shape: fc.array(fc.integer({ min: -2, max: 8 }), { maxLength: 3 }),
      data_offsets: fc.tuple(fc.integer({ min: -1, max: 80 }), fc.integer({ min: -1, max: 80 })),
    });
    await fc.assert(
      fc.asyncProperty(
        fc.dictionary(fc.string({ maxLength: 4 }), tensor, { maxKeys: 4 }),
        fc.nat(80),
        async (h, n) => {
          const r = await scanBuffer(st(JSON.stringify(h), new Uint8Array(n)));
          assert.notEqual(r.verdict, 'error');
        },
      ),
      { numRuns: 300 },
    );
  });

  it('on raw bytes after a plausible length prefix', async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 120 }), async (bytes) => {
        const r = await scanBuffer(st(`{${Buffer.from(bytes).toString('latin1')}`));
        assert.notEqual(r.verdict, 'error');
      }),
      { numRuns: 300 },
    );
  });
});

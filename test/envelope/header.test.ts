import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { MalformedEnvelopeError, parseHeader } from '../../src/envelope/index.ts';
import { encodeCore, encodeHeaderWithoutMac, MAX_HEADER_BYTES } from '../../src/envelope/header.ts';

const core = (context: Record<string, string> = {}, plaintextLength: number | undefined = 10) =>
  encodeCore({ chunkExponent: 16, plaintextLength, context });
const slot = { type: 'local' as const, ref: 'k1', wrappedKey: Buffer.alloc(60, 7) };
const header = (coreBytes = core()) =>
  Buffer.concat([encodeHeaderWithoutMac(coreBytes, [slot]), Buffer.alloc(32, 1)]);

describe('envelope header codec', () => {
  it('round-trips core fields, context and slots', () => {
    const h = parseHeader(header(core({ b: '2', a: '1', ключ: 'значение' }, 12345)));
    assert.equal(h.chunkExponent, 16);
    assert.equal(h.plaintextLength, 12345);
    assert.deepEqual(h.context, { a: '1', b: '2', ключ: 'значение' });
    assert.deepEqual(Object.keys(h.context), ['a', 'b', 'ключ']);
    assert.equal(h.slots.length, 1);
    assert.equal(h.slots[0]?.ref, 'k1');
    const streamed = encodeCore({ chunkExponent: 16, plaintextLength: undefined, context: {} });
    assert.equal(parseHeader(header(streamed)).plaintextLength, undefined);
  });

  it('encodes a context one way only, whatever the insertion order', () => {
    assert.deepEqual(core({ x: '1', y: '2' }), core({ y: '2', x: '1' }));
  });

  it('rejects each malformation with a typed error', () => {
    const good = header(core({ a: '1', b: '2' }));
    const mutate = (f: (b: Buffer) => void) => {
      const b = Buffer.from(good);
      f(b);
      return b;
    };
    const cases: [string, Buffer][] = [
      ['bad magic', mutate((b) => (b[0] = 0x58))],
      ['version', mutate((b) => (b[8] = 2))],
      ['suite', mutate((b) => (b[9] = 9))],
      ['chunk exponent low', mutate((b) => (b[10] = 13))],
      ['chunk exponent high', mutate((b) => (b[10] = 25))],
      ['unknown flag', mutate((b) => (b[11] = 0x03))],
      ['length without flag', mutate((b) => (b[11] = 0))],
      ['header length too large', mutate((b) => b.writeUInt32BE(MAX_HEADER_BYTES + 1, 4))],
      ['header length too small', mutate((b) => b.writeUInt32BE(10, 4))],
      ['header length beyond data', mutate((b) => b.writeUInt32BE(b.length + 1, 4))],
      [
        'keys out of order',
        Buffer.concat([encodeHeaderWithoutMac(swapKeys(core({ a: '1', b: '2' })), [slot]), Buffer.alloc(32)]),
      ],
      ['unknown slot type', mutate((b) => (b[b.length - 32 - 60 - 2 - 2 - 2 - 1] = 9))],
      ['zero slots', mutate((b) => (b[b.length - 32 - 60 - 2 - 2 - 2 - 1 - 1] = 0))],
      ['invalid utf-8 in key', mutate((b) => (b[24] = 0xff))],
      ['truncated', good.subarray(0, 30)],
    ];
    for (const [name, bytes] of cases) {
      assert.throws(() => parseHeader(bytes), MalformedEnvelopeError, name);
    }
  });

  it('never allocates from declared lengths: a huge declared header fails before any read', () => {
    const b = Buffer.from(header());
    b.writeUInt32BE(0xffffffff, 4);
    assert.throws(() => parseHeader(b), /exceeds 1 MiB/);
  });

  it('fuzz: arbitrary bytes and mutations of a valid header parse or fail with MalformedEnvelopeError only', () => {
    const valid = header(core({ purpose: 'x' }));
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 400 }), (bytes) => {
        try {
          parseHeader(Buffer.concat([Buffer.from('WRDN'), Buffer.from(bytes)]));
        } catch (err) {
          assert.ok(err instanceof MalformedEnvelopeError, String(err));
        }
      }),
      { numRuns: 2000 },
    );
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.nat(valid.length - 1), fc.integer({ min: 0, max: 255 })), { maxLength: 4 }),
        (edits) => {
          const b = Buffer.from(valid);
          for (const [i, v] of edits) b[i] = v;
          try {
            const h = parseHeader(b);
            assert.ok(h.headerLength <= b.length);
          } catch (err) {
            assert.ok(err instanceof MalformedEnvelopeError, String(err));
          }
        },
      ),
      { numRuns: 2000 },
    );
  });
});

/** The encoded core with its two context entries' order swapped (a non-canonical encoding). */
function swapKeys(coreBytes: Buffer): Buffer {
  const fixed = coreBytes.subarray(0, 14);
  const first = coreBytes.subarray(14, 14 + 2 + 1 + 2 + 1);
  const second = coreBytes.subarray(14 + 6);
  return Buffer.concat([fixed, second, first]);
}

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { InvalidInputError } from '../../../src/crypto/index.ts';
import {
  combine,
  decodeShare,
  encodeShare,
  gfInv,
  gfMul,
  split,
  type Share,
} from '../../../src/kms/root/shamir.ts';

/** Schoolbook carry-less product reduced bit by bit: an independent definition to check gfMul against. */
function referenceMul(a: number, b: number): number {
  let wide = 0;
  for (let i = 0; i < 8; i++) if ((b >> i) & 1) wide ^= a << i;
  for (let bit = 14; bit >= 8; bit--) if ((wide >> bit) & 1) wide ^= 0x11b << (bit - 8);
  return wide;
}

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

/** Vectors from docs/spec/shamir-shares.md. */
const SPEC_SECRET = '000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f';
const SPEC_SHARES = [
  'warden-share-v1:1:ehEwi1Kwza5-RlaGZRXaMxWFEySdTjGr18wwPqXHSE4:c0c5f9d6',
  'warden-share-v1:2:OsttDLArJbDgfh5KE8Wjf0ZiS_rivFlTDDqkJHS7djg:2426118d',
  'warden-share-v1:3:QNtfhOae7hmWMULHet13Q0P2Ss1r537vw--OAc1hIGk:5f64aeda',
  'warden-share-v1:4:YQvwDRc-zqfTbqSSK0s3z9fs1_AyIIwDQiH4qshu83M:baec238b',
  'warden-share-v1:5:GxvChUGLBQ6lIfgfQlPj89J41se7e6u_jfTSj3G0pSI:bac29b4c',
];

/** n, threshold t, a t-sized subset of share indices in random order, and a secret. */
const splitCase = fc
  .record({ n: fc.integer({ min: 2, max: 12 }), secret: fc.uint8Array({ minLength: 1, maxLength: 48 }) })
  .chain(({ n, secret }) =>
    fc.integer({ min: 2, max: n }).chain((t) =>
      fc.record({
        n: fc.constant(n),
        t: fc.constant(t),
        secret: fc.constant(secret),
        pick: fc.shuffledSubarray(
          Array.from({ length: n }, (_, i) => i),
          { minLength: t, maxLength: t },
        ),
      }),
    ),
  );

describe('GF(2^8) arithmetic', () => {
  it('multiplies like the reference for all 65536 pairs, with FIPS-197 known answers', () => {
    for (let a = 0; a < 256; a++) {
      for (let b = 0; b < 256; b++) assert.equal(gfMul(a, b), referenceMul(a, b));
    }
    assert.equal(gfMul(0x57, 0x83), 0xc1); // FIPS-197 §4.2
    assert.equal(gfMul(0x57, 0x13), 0xfe); // FIPS-197 §4.2.1
    assert.equal(gfInv(0x53), 0xca); // FIPS-197 §5.1.1 example
  });

  it('satisfies the field axioms over all elements', () => {
    for (let a = 0; a < 256; a++) {
      assert.equal(gfMul(a, 1), a);
      assert.equal(gfMul(a, 0), 0);
      if (a !== 0) assert.equal(gfMul(a, gfInv(a)), 1, `inverse of ${a}`);
      for (let b = 0; b < 256; b++) {
        const ab = gfMul(a, b);
        if (ab !== gfMul(b, a)) assert.fail(`commutativity ${a} ${b}`);
        if (a !== 0 && b !== 0 && ab === 0) assert.fail(`zero divisor ${a} ${b}`);
        for (let c = 0; c < 256; c++) {
          if (gfMul(ab, c) !== gfMul(a, gfMul(b, c))) assert.fail(`associativity ${a} ${b} ${c}`);
          if (gfMul(a, b ^ c) !== (ab ^ gfMul(a, c))) assert.fail(`distributivity ${a} ${b} ${c}`);
        }
      }
    }
    assert.equal(gfInv(0), 0);
  });
});

describe('split and combine', () => {
  it('recombines from any threshold-sized subset, in any order', () => {
    fc.assert(
      fc.property(splitCase, ({ n, t, secret, pick }) => {
        const shares = split(secret, n, t);
        assert.equal(shares.length, n);
        assert.deepEqual(
          shares.map((s) => s.x),
          Array.from({ length: n }, (_, i) => i + 1),
        );
        assert.equal(hex(combine(pick.map((i) => shares[i]!))), hex(secret));
        // More shares than needed lie on the same polynomial.
        assert.equal(hex(combine(shares)), hex(secret));
      }),
      { numRuns: 300 },
    );
  });

  it('gives a different value from any smaller subset', () => {
    fc.assert(
      fc.property(
        // 16+ bytes: each byte of a short combination matches by chance with probability 1/256.
        splitCase.filter(({ t }) => t >= 3),
        fc.uint8Array({ minLength: 16, maxLength: 32 }),
        ({ n, t, pick }, secret) => {
          const shares = split(secret, n, t);
          const fewer = pick.slice(0, t - 1).map((i) => shares[i]!);
          assert.notEqual(hex(combine(fewer)), hex(secret));
        },
      ),
      { numRuns: 200 },
    );
    // t = 2: a single share cannot be combined at all.
    const [one] = split(new Uint8Array(32).fill(7), 3, 2);
    assert.throws(() => combine([one!]), InvalidInputError);
  });

  it('draws fresh coefficients on every split', () => {
    const secret = new Uint8Array(32).fill(9);
    const [a] = split(secret, 2, 2);
    const [b] = split(secret, 2, 2);
    assert.notEqual(hex(a!.y), hex(b!.y));
  });

  it('matches the worked examples in the spec', () => {
    // Secret 0x42, a1 = 0x07: f(1) = 0x45, f(2) = 0x4c, f(3) = 0x4b.
    const tiny = (x: number, y: number): Share => ({ x, y: Uint8Array.of(y) });
    assert.equal(gfMul(0x07, 2) ^ 0x42, 0x4c);
    assert.equal(gfInv(3), 0xf6);
    assert.equal(gfMul(0xf7, 0x45) ^ gfMul(0xf6, 0x4c), 0x42);
    assert.equal(hex(combine([tiny(1, 0x45), tiny(2, 0x4c)])), '42');
    assert.equal(hex(combine([tiny(3, 0x4b), tiny(1, 0x45)])), '42');

    const decoded = SPEC_SHARES.map(decodeShare);
    for (const trio of [
      [0, 1, 2],
      [4, 0, 2],
      [1, 3, 4],
    ]) {
      assert.equal(hex(combine(trio.map((i) => decoded[i]!))), SPEC_SECRET);
    }
  });

  it('handles the extremes: 255 shares, threshold 255, threshold 2 of 255', () => {
    const secret = Buffer.from(SPEC_SECRET, 'hex');
    const all = split(secret, 255, 255);
    assert.equal(hex(combine([...all].reverse())), SPEC_SECRET);
    assert.notEqual(hex(combine(all.slice(1))), SPEC_SECRET);
    const pairs = split(secret, 255, 2);
    assert.equal(hex(combine([pairs[254]!, pairs[127]!])), SPEC_SECRET);
  });

  it('rejects bad parameters', () => {
    const secret = new Uint8Array(32);
    for (const [n, t] of [
      [3, 1],
      [1, 1],
      [2, 3],
      [256, 2],
      [5, 0],
      [5, 2.5],
      [Number.NaN, 2],
    ] as const) {
      assert.throws(() => split(secret, n, t), InvalidInputError, `${n} ${t}`);
    }
    assert.throws(() => split(new Uint8Array(0), 3, 2), InvalidInputError);
    assert.throws(() => split(new Uint8Array(1025), 3, 2), InvalidInputError);
  });

  it('rejects duplicate x, mismatched lengths and bad x on combining', () => {
    const shares = split(new Uint8Array(32).fill(1), 4, 3);
    const [a, b, c] = shares as [Share, Share, Share];
    assert.throws(() => combine([a, b, a]), /same x-coordinate 1/);
    assert.throws(() => combine([a, b, { x: 3, y: c.y.subarray(1) }]), /different lengths/);
    assert.throws(() => combine([a, { x: 0, y: b.y }]), InvalidInputError);
    assert.throws(() => combine([a, { x: 256, y: b.y }]), InvalidInputError);
    assert.throws(() => combine([]), InvalidInputError);
  });
});

describe('share encoding', () => {
  it('round-trips', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 255 }),
        fc.uint8Array({ minLength: 1, maxLength: 64 }),
        (x, y) => {
          const text = encodeShare({ x, y });
          assert.match(text, /^warden-share-v1:[1-9][0-9]*:[A-Za-z0-9_-]+:[0-9a-f]{8}$/);
          const back = decodeShare(`  ${text}\n`);
          assert.equal(back.x, x);
          assert.equal(hex(back.y), hex(y));
        },
      ),
    );
  });

  it('detects any single changed character', () => {
    const text = SPEC_SHARES[2]!;
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_:';
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: text.length - 1 }),
        fc.constantFrom(...Array.from(alphabet)),
        (position, replacement) => {
          fc.pre(text[position] !== replacement);
          const typo = text.slice(0, position) + replacement + text.slice(position + 1);
          assert.throws(() => decodeShare(typo), InvalidInputError);
        },
      ),
      { numRuns: 2000 },
    );
    // Every position, with a neighbouring character from the same class.
    for (let i = 0; i < text.length; i++) {
      const ch = text[i]!;
      const swapped =
        ch === '9' ? '8' : ch === 'z' ? 'y' : ch === ':' ? ';' : String.fromCharCode(ch.charCodeAt(0) + 1);
      assert.throws(() => decodeShare(text.slice(0, i) + swapped + text.slice(i + 1)), InvalidInputError);
    }
  });

  it('rejects malformed shares without echoing them', () => {
    const good = SPEC_SHARES[0]!;
    const body = good.slice(0, good.lastIndexOf(':'));
    const bad = [
      '',
      'warden-share-v2:1:AAAA:00000000',
      good.toUpperCase(),
      good.slice(0, -1),
      `${good}0`,
      good.replace(':1:', ':01:'),
      good.replace(':1:', ':0:'),
      `${body}x:00000000`,
      `${good} trailing`,
    ];
    for (const text of bad) {
      assert.throws(
        () => decodeShare(text),
        (err: unknown) => {
          assert.ok(err instanceof InvalidInputError);
          assert.ok(!err.message.includes('ehEwi1Kwza5'), 'message must not quote the share');
          return true;
        },
      );
    }
    assert.throws(() => encodeShare({ x: 0, y: Uint8Array.of(1) }), InvalidInputError);
    assert.throws(() => encodeShare({ x: 1, y: new Uint8Array(0) }), InvalidInputError);
  });

  it('refuses a non-canonical payload or an x above 255 even with a valid checksum', () => {
    const withSum = (body: string): string =>
      `${body}:${createHash('sha256').update(body).digest('hex').slice(0, 8)}`;
    // "AB" decodes to 0x00 like "AA", but its spare bits are set.
    assert.equal(decodeShare(withSum('warden-share-v1:1:AA')).y[0], 0);
    assert.throws(() => decodeShare(withSum('warden-share-v1:1:AB')), InvalidInputError);
    assert.throws(() => decodeShare(withSum('warden-share-v1:256:AA')), InvalidInputError);
    assert.throws(() => decodeShare(withSum('warden-share-v1:1:')), InvalidInputError);
  });
});

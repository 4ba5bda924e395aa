import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { JsonWebKey } from 'node:crypto';
import fc from 'fast-check';
import {
  EcdsaPrivateKey,
  EcdsaPublicKey,
  ecdsaDerToP1363,
  ecdsaP1363ToDer,
  ecdsaSign,
  ecdsaVerify,
  type EcdsaCurve,
  type EcdsaSignatureEncoding,
} from '../../src/crypto/ecdsa.ts';
import { InvalidInputError, InvalidKeyError } from '../../src/crypto/errors.ts';
import { Ed25519PrivateKey } from '../../src/crypto/ed25519.ts';
import { hex, loadWycheproof, type WycheproofGroup } from '../support/vectors.ts';

const ORDER: Record<EcdsaCurve, bigint> = {
  'P-256': 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n,
  'P-384':
    0xffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973n,
};

interface VectorFile {
  readonly name: string;
  readonly curve: EcdsaCurve;
  readonly encoding: EcdsaSignatureEncoding;
  readonly expected: { valid: number; invalid: number };
}

const FILES: readonly VectorFile[] = [
  {
    name: 'ecdsa_secp256r1_sha256_test.json',
    curve: 'P-256',
    encoding: 'der',
    expected: { valid: 174, invalid: 310 },
  },
  {
    name: 'ecdsa_secp256r1_sha256_p1363_test.json',
    curve: 'P-256',
    encoding: 'ieee-p1363',
    expected: { valid: 173, invalid: 89 },
  },
  {
    name: 'ecdsa_secp384r1_sha384_test.json',
    curve: 'P-384',
    encoding: 'der',
    expected: { valid: 194, invalid: 310 },
  },
  {
    name: 'ecdsa_secp384r1_sha384_p1363_test.json',
    curve: 'P-384',
    encoding: 'ieee-p1363',
    expected: { valid: 193, invalid: 87 },
  },
];

/** Imports the group's key through every format it offers, checks they agree, and returns one of them. */
function groupKey(group: WycheproofGroup, curve: EcdsaCurve): EcdsaPublicKey {
  const point = hex((group.publicKey as { uncompressed: string }).uncompressed);
  const fromDer = EcdsaPublicKey.fromSpkiDer(hex(group.publicKeyDer));
  assert.equal(fromDer.curve, curve);
  assert.deepEqual(fromDer.toRaw(), point);
  assert.deepEqual(EcdsaPublicKey.fromRaw(point, curve).toSpkiDer(), fromDer.toSpkiDer());
  assert.deepEqual(EcdsaPublicKey.fromPem(group.publicKeyPem as string).toRaw(), point);
  if (group.publicKeyJwk !== undefined) {
    assert.deepEqual(EcdsaPublicKey.fromJwk(group.publicKeyJwk as JsonWebKey).toRaw(), point);
  }
  return fromDer;
}

/** The converter in the other direction, or undefined where it refuses the input. */
function convert(signature: Buffer, from: EcdsaSignatureEncoding, curve: EcdsaCurve): Buffer | undefined {
  try {
    return from === 'der' ? ecdsaDerToP1363(signature, curve) : ecdsaP1363ToDer(signature, curve);
  } catch (e) {
    assert.ok(e instanceof InvalidInputError);
    return undefined;
  }
}

for (const spec of FILES) {
  describe(`ECDSA ${spec.curve} ${spec.encoding}, Wycheproof ${spec.name}`, () => {
    const file = loadWycheproof(spec.name);

    it('accepts every valid signature and rejects every invalid one, directly and after conversion', () => {
      const other: EcdsaSignatureEncoding = spec.encoding === 'der' ? 'ieee-p1363' : 'der';
      const seen = { valid: 0, invalid: 0, acceptable: 0 };
      for (const group of file.testGroups) {
        const key = groupKey(group, spec.curve);
        for (const t of group.tests) {
          const label = `tcId ${t.tcId} ${t.comment}`;
          const [msg, sig] = [hex(t.msg), hex(t.sig)];
          const valid = t.result === 'valid';
          assert.equal(ecdsaVerify(key, msg, sig, spec.encoding), valid, label);
          // The strict converter must agree with the verifier: a valid signature converts and still verifies,
          // an invalid one is refused by the converter or fails in the other encoding.
          const converted = convert(sig, spec.encoding, spec.curve);
          if (valid) {
            assert.ok(converted !== undefined, label);
            assert.equal(ecdsaVerify(key, msg, converted, other), true, label);
            assert.deepEqual(convert(converted, other, spec.curve), sig, label);
          } else if (converted !== undefined) {
            assert.equal(ecdsaVerify(key, msg, converted, other), false, label);
          }
          seen[t.result]++;
        }
      }
      assert.deepEqual(seen, { ...spec.expected, acceptable: 0 });
      assert.equal(seen.valid + seen.invalid, file.numberOfTests);
    });
  });
}

describe('ECDSA sign / verify', () => {
  for (const curve of ['P-256', 'P-384'] as const) {
    it(`signs and verifies on ${curve} in both encodings`, () => {
      const key = EcdsaPrivateKey.generate(curve);
      const publicKey = key.publicKey();
      assert.equal(publicKey.curve, curve);
      const message = Buffer.from('release manifest');
      const der = ecdsaSign(key, message);
      const p1363 = ecdsaSign(key, message, 'ieee-p1363');
      assert.equal(p1363.byteLength, curve === 'P-256' ? 64 : 96);
      assert.equal(ecdsaVerify(publicKey, message, der), true);
      assert.equal(ecdsaVerify(publicKey, message, der, 'der'), true);
      assert.equal(ecdsaVerify(publicKey, message, p1363, 'ieee-p1363'), true);
      // Wrong encoding, wrong message, wrong key.
      assert.equal(ecdsaVerify(publicKey, message, der, 'ieee-p1363'), false);
      assert.equal(ecdsaVerify(publicKey, message, p1363, 'der'), false);
      assert.equal(ecdsaVerify(publicKey, Buffer.from('release manifesT'), der), false);
      assert.equal(ecdsaVerify(EcdsaPrivateKey.generate(curve).publicKey(), message, der), false);
      // Private keys survive PKCS#8 and JWK.
      const restored = EcdsaPrivateKey.fromPkcs8Der(key.exportPkcs8Der());
      assert.equal(ecdsaVerify(publicKey, message, ecdsaSign(restored, message)), true);
    });
  }

  it('returns false, never throws, for arbitrary signature bytes', () => {
    const publicKey = EcdsaPrivateKey.generate('P-256').publicKey();
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 80 }), fc.constantFrom('der', 'ieee-p1363'), (sig, encoding) => {
        assert.equal(ecdsaVerify(publicKey, Buffer.from('m'), sig, encoding), false);
      }),
      { numRuns: 200 },
    );
  });

  it('refuses other curves, compressed or malformed points, and non-EC keys', () => {
    assert.throws(() => EcdsaPrivateKey.generate('P-521' as EcdsaCurve), InvalidKeyError);
    const point = EcdsaPrivateKey.generate('P-256').publicKey().toRaw();
    assert.throws(() => EcdsaPublicKey.fromRaw(point, 'P-384'), InvalidKeyError);
    assert.throws(() => EcdsaPublicKey.fromRaw(point.subarray(0, 33), 'P-256'), InvalidKeyError);
    const offCurve = Buffer.from(point);
    offCurve[64] = (offCurve[64] ?? 0) ^ 1;
    assert.throws(() => EcdsaPublicKey.fromRaw(offCurve, 'P-256'), InvalidKeyError);
    const ed = Ed25519PrivateKey.generate();
    assert.throws(() => EcdsaPrivateKey.fromPkcs8Der(ed.exportPkcs8Der()), InvalidKeyError);
    assert.throws(() => EcdsaPublicKey.fromSpkiDer(ed.publicKey().toSpkiDer()), InvalidKeyError);
    assert.throws(
      () => ecdsaSign(EcdsaPrivateKey.generate('P-256'), Buffer.alloc(1), 'raw' as EcdsaSignatureEncoding),
      InvalidInputError,
    );
  });
});

describe('DER <-> IEEE P1363 conversion', () => {
  const curves = ['P-256', 'P-384'] as const;
  const scalar = (curve: EcdsaCurve): fc.Arbitrary<bigint> => fc.bigInt({ min: 1n, max: ORDER[curve] - 1n });
  const width = (curve: EcdsaCurve): number => (curve === 'P-256' ? 32 : 48);
  const p1363 = (r: bigint, s: bigint, curve: EcdsaCurve): Buffer =>
    Buffer.from(
      r.toString(16).padStart(2 * width(curve), '0') + s.toString(16).padStart(2 * width(curve), '0'),
      'hex',
    );

  it('round-trips every (r, s) in [1, n) and produces minimal DER', () => {
    for (const curve of curves) {
      fc.assert(
        fc.property(scalar(curve), scalar(curve), (r, s) => {
          const raw = p1363(r, s, curve);
          const der = ecdsaP1363ToDer(raw, curve);
          assert.deepEqual(ecdsaDerToP1363(der, curve), raw);
          assert.equal(der[0], 0x30);
          assert.equal(der[1], der.byteLength - 2);
        }),
        { numRuns: 200 },
      );
    }
  });

  it('accepts only canonical DER: whatever it accepts re-encodes to the same bytes', () => {
    for (const curve of curves) {
      const valid = fc
        .tuple(scalar(curve), scalar(curve))
        .map(([r, s]) => ecdsaP1363ToDer(p1363(r, s, curve), curve));
      // Random bytes, and valid encodings with one byte changed, inserted or removed.
      const candidates = fc.oneof(
        fc.uint8Array({ maxLength: 110 }).map((a) => Buffer.from(a)),
        fc
          .tuple(
            valid,
            fc.nat(),
            fc.integer({ min: 0, max: 255 }),
            fc.constantFrom('set', 'insert', 'delete'),
          )
          .map(([der, at, byte, edit]) => {
            const i = at % der.byteLength;
            if (edit === 'set')
              return Buffer.concat([der.subarray(0, i), Buffer.of(byte), der.subarray(i + 1)]);
            if (edit === 'insert')
              return Buffer.concat([der.subarray(0, i), Buffer.of(byte), der.subarray(i)]);
            return Buffer.concat([der.subarray(0, i), der.subarray(i + 1)]);
          }),
      );
      fc.assert(
        fc.property(candidates, (candidate) => {
          let raw: Buffer;
          try {
            raw = ecdsaDerToP1363(candidate, curve);
          } catch (e) {
            assert.ok(e instanceof InvalidInputError);
            return;
          }
          assert.deepEqual(ecdsaP1363ToDer(raw, curve), candidate);
        }),
        { numRuns: 200 },
      );
    }
  });

  it('agrees with OpenSSL on signatures made by OpenSSL', () => {
    for (const curve of curves) {
      const key = EcdsaPrivateKey.generate(curve);
      const publicKey = key.publicKey();
      fc.assert(
        fc.property(fc.uint8Array({ maxLength: 64 }), (message) => {
          const der = ecdsaSign(key, message, 'der');
          const raw = ecdsaDerToP1363(der, curve);
          assert.equal(ecdsaVerify(publicKey, message, raw, 'ieee-p1363'), true);
          assert.deepEqual(ecdsaP1363ToDer(raw, curve), der);
          const direct = ecdsaSign(key, message, 'ieee-p1363');
          assert.equal(ecdsaVerify(publicKey, message, ecdsaP1363ToDer(direct, curve), 'der'), true);
        }),
        { numRuns: 50 },
      );
    }
  });

  it('refuses zero, n and over-long scalars, negative or padded integers, and trailing bytes', () => {
    const n = ORDER['P-256'];
    const good = ecdsaP1363ToDer(p1363(1n, 1n, 'P-256'), 'P-256');
    assert.equal(good.toString('hex'), '3006020101020101');
    const bad = [
      '3006020100020101', // r = 0
      '3006020101020100', // s = 0
      '30070201010202ff01', // negative s
      '300702020001020101', // r with a needless leading zero
      '3080020101020101', // indefinite length
      '308106020101020101', // long-form length below 128
      '3006020101020101' + '00', // trailing byte
      '3106020101020101', // SET, not SEQUENCE
      '3006030101020101', // BIT STRING, not INTEGER
      '3005020101020101', // length mismatch
      '30050201010201', // truncated
      '',
    ];
    for (const h of bad)
      assert.throws(() => ecdsaDerToP1363(Buffer.from(h, 'hex'), 'P-256'), InvalidInputError, h);
    const rIsN = Buffer.from(`3026022100${n.toString(16)}020101`, 'hex');
    assert.throws(() => ecdsaDerToP1363(rIsN, 'P-256'), InvalidInputError);
    const rIsNMinus1 = Buffer.from(`3026022100${(n - 1n).toString(16)}020101`, 'hex');
    assert.equal(ecdsaDerToP1363(rIsNMinus1, 'P-256').subarray(0, 32).toString('hex'), (n - 1n).toString(16));
    assert.throws(() => ecdsaP1363ToDer(p1363(n, 1n, 'P-256'), 'P-256'), InvalidInputError);
    assert.throws(() => ecdsaP1363ToDer(Buffer.alloc(64), 'P-256'), InvalidInputError);
    assert.throws(() => ecdsaP1363ToDer(Buffer.alloc(63, 1), 'P-256'), InvalidInputError);
    assert.throws(() => ecdsaP1363ToDer(Buffer.alloc(64, 1), 'P-384'), InvalidInputError);
  });
});

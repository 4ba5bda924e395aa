import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import fc from 'fast-check';
import { InvalidInputError } from '../../src/crypto/index.ts';
import {
  generateTotp,
  generateTotpSecret,
  totpProvisioningUri,
  totpSecretFromBase32,
  totpSecretToBase32,
  totpStep,
  verifyTotp,
  type TotpAlgorithm,
} from '../../src/identity/credentials/totp.ts';

// RFC 6238 Appendix B: the seeds are ASCII digits, 20/32/64 bytes for SHA1/SHA256/SHA512; 8 digits, 30 s.
const SEEDS: Record<TotpAlgorithm, Buffer> = {
  SHA1: Buffer.from('12345678901234567890', 'ascii'),
  SHA256: Buffer.from('12345678901234567890123456789012', 'ascii'),
  SHA512: Buffer.from('1234567890123456789012345678901234567890123456789012345678901234', 'ascii'),
};
const VECTORS: [number, string, TotpAlgorithm][] = [
  [59, '94287082', 'SHA1'],
  [59, '46119246', 'SHA256'],
  [59, '90693936', 'SHA512'],
  [1111111109, '07081804', 'SHA1'],
  [1111111109, '68084774', 'SHA256'],
  [1111111109, '25091201', 'SHA512'],
  [1111111111, '14050471', 'SHA1'],
  [1111111111, '67062674', 'SHA256'],
  [1111111111, '99943326', 'SHA512'],
  [1234567890, '89005924', 'SHA1'],
  [1234567890, '91819424', 'SHA256'],
  [1234567890, '93441116', 'SHA512'],
  [2000000000, '69279037', 'SHA1'],
  [2000000000, '90698825', 'SHA256'],
  [2000000000, '38618901', 'SHA512'],
  [20000000000, '65353130', 'SHA1'],
  [20000000000, '77737706', 'SHA256'],
  [20000000000, '47863826', 'SHA512'],
];

/** Independent RFC 4226/6238 reference, straight from the RFC text, to cross-check otpauth on random inputs. */
function referenceTotp(secret: Buffer, alg: TotpAlgorithm, digits: number, unixSeconds: number): string {
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(unixSeconds / 30)));
  const h = createHmac(alg.toLowerCase(), secret).update(counter).digest();
  const offset = h[h.length - 1]! & 0xf;
  const bin = (h.readUInt32BE(offset) & 0x7fffffff) % 10 ** digits;
  return bin.toString().padStart(digits, '0');
}

describe('TOTP, RFC 6238 Appendix B', () => {
  for (const [time, code, alg] of VECTORS) {
    it(`${alg} T=${time} -> ${code}`, () => {
      const secret = SEEDS[alg];
      assert.equal(generateTotp(secret, { algorithm: alg, digits: 8, unixSeconds: time }), code);
      assert.equal(referenceTotp(secret, alg, 8, time), code);
      const r = verifyTotp({
        secret,
        code,
        algorithm: alg,
        digits: 8,
        unixSeconds: time,
        lastUsedStep: null,
      });
      assert.deepEqual(r, { ok: true, step: Math.floor(time / 30) });
    });
  }

  it('agrees with the independent reference on random secrets, times and sizes (fast-check)', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 16, maxLength: 64 }),
        fc.constantFrom<TotpAlgorithm>('SHA1', 'SHA256', 'SHA512'),
        fc.integer({ min: 6, max: 8 }),
        fc.integer({ min: 0, max: 2 ** 40 }),
        (secret, alg, digits, t) => {
          assert.equal(
            generateTotp(secret, { algorithm: alg, digits, unixSeconds: t }),
            referenceTotp(Buffer.from(secret), alg, digits, t),
          );
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('verifyTotp', () => {
  const secret = SEEDS.SHA1;
  const t0 = 1_700_000_010; // a step boundary + 10 s
  const step0 = totpStep(t0);
  const codeAt = (t: number) => generateTotp(secret, { unixSeconds: t });

  it('accepts the current step and one either side, nothing further', () => {
    for (const d of [-1, 0, 1]) {
      assert.deepEqual(
        verifyTotp({ secret, code: codeAt(t0 + d * 30), unixSeconds: t0, lastUsedStep: null }),
        {
          ok: true,
          step: step0 + d,
        },
      );
    }
    for (const d of [-3, -2, 2, 3]) {
      const r = verifyTotp({ secret, code: codeAt(t0 + d * 30), unixSeconds: t0, lastUsedStep: null });
      assert.equal(r.ok, false);
    }
    const none = verifyTotp({
      secret,
      code: codeAt(t0 - 30),
      unixSeconds: t0,
      lastUsedStep: null,
      window: 0,
    });
    assert.deepEqual(none, { ok: false, reason: 'invalid' });
  });

  it('refuses a replay of the same step and of any earlier step', () => {
    const code = codeAt(t0);
    const first = verifyTotp({ secret, code, unixSeconds: t0, lastUsedStep: null });
    assert.ok(first.ok);
    assert.deepEqual(verifyTotp({ secret, code, unixSeconds: t0 + 5, lastUsedStep: first.step }), {
      ok: false,
      reason: 'replayed',
    });
    // The previous step's code is still inside the window, but older than the last used step.
    assert.deepEqual(
      verifyTotp({ secret, code: codeAt(t0 - 30), unixSeconds: t0, lastUsedStep: first.step }),
      {
        ok: false,
        reason: 'replayed',
      },
    );
    // The next step's code is fine.
    assert.deepEqual(
      verifyTotp({ secret, code: codeAt(t0 + 30), unixSeconds: t0 + 30, lastUsedStep: first.step }),
      {
        ok: true,
        step: step0 + 1,
      },
    );
  });

  it('rejects malformed codes without throwing', () => {
    for (const code of [
      '',
      '12345',
      '1234567',
      'abcdef',
      '12345a',
      '١٢٣٤٥٦',
      '+12345',
      ' ',
      null as unknown as string,
    ]) {
      assert.deepEqual(verifyTotp({ secret, code, unixSeconds: t0, lastUsedStep: null }), {
        ok: false,
        reason: 'malformed',
      });
    }
    const spaced = codeAt(t0).replace(/^(...)/, '$1 ');
    assert.equal(verifyTotp({ secret, code: spaced, unixSeconds: t0, lastUsedStep: null }).ok, true);
  });

  it('never throws for any code string (fast-check)', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 20 }), (code) => {
        const r = verifyTotp({ secret, code, unixSeconds: t0, lastUsedStep: null });
        assert.equal(typeof r.ok, 'boolean');
      }),
    );
  });

  it('refuses bad secrets and configuration with typed errors', () => {
    const base = { code: '123456', unixSeconds: t0, lastUsedStep: null };
    assert.throws(() => verifyTotp({ ...base, secret: Buffer.alloc(10) }), InvalidInputError);
    assert.throws(() => verifyTotp({ ...base, secret, digits: 9 }), InvalidInputError);
    assert.throws(
      () => verifyTotp({ ...base, secret, algorithm: 'MD5' as TotpAlgorithm }),
      InvalidInputError,
    );
    assert.throws(() => verifyTotp({ ...base, secret, window: 11 }), InvalidInputError);
    assert.throws(() => verifyTotp({ ...base, secret, lastUsedStep: 1.5 }), InvalidInputError);
  });
});

describe('secrets and provisioning', () => {
  it('generates 20-byte secrets by default, round-trips base32', () => {
    const s = generateTotpSecret();
    assert.equal(s.length, 20);
    assert.ok(totpSecretFromBase32(totpSecretToBase32(s)).equals(s));
    assert.equal(totpSecretToBase32(SEEDS.SHA1), 'GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ');
    assert.ok(totpSecretFromBase32('gezd gnbv gy3t qojq gezd gnbv gy3t qojq').equals(SEEDS.SHA1));
    assert.throws(() => totpSecretFromBase32('GEZDGNBV1'), InvalidInputError);
    assert.throws(() => totpSecretFromBase32('GEZDGNBV'), InvalidInputError); // 5 bytes: too short
    assert.throws(() => generateTotpSecret(8), InvalidInputError);
  });

  it('builds an otpauth:// URI that carries issuer, label, secret and parameters', () => {
    const uri = new URL(
      totpProvisioningUri({
        secret: SEEDS.SHA1,
        issuer: 'Warden',
        accountName: 'alice@example.com',
        digits: 8,
      }),
    );
    assert.equal(uri.protocol, 'otpauth:');
    assert.equal(uri.host, 'totp');
    assert.equal(decodeURIComponent(uri.pathname), '/Warden:alice@example.com');
    assert.equal(uri.searchParams.get('secret'), 'GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ');
    assert.equal(uri.searchParams.get('issuer'), 'Warden');
    assert.equal(uri.searchParams.get('algorithm'), 'SHA1');
    assert.equal(uri.searchParams.get('digits'), '8');
    assert.equal(uri.searchParams.get('period'), '30');
    assert.throws(
      () => totpProvisioningUri({ secret: SEEDS.SHA1, issuer: 'War:den', accountName: 'alice' }),
      InvalidInputError,
    );
  });
});

import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  CLIENT_KINDS,
  CaError,
  ClientCertificateRejectedError,
  RevocationList,
  TrustAnchors,
  clientIdentityUri,
  identityFromUri,
  parseClientIdentity,
  publicKeyFromCsr,
  serialHex,
  verifyClientCertificate,
} from '../../../src/identity/index.ts';
import { admin, caFixture, ecKeyPair, opensslCsr } from './support.ts';

function derOf(pem: string): Buffer {
  return Buffer.from(pem.replace(/-----[A-Z0-9 ]+-----/g, '').replace(/\s+/g, ''), 'base64');
}

/** Byte-level damage to a valid DER object: flips, truncation, insertion, deletion. */
function mutated(der: Buffer): fc.Arbitrary<Buffer> {
  return fc.oneof(
    fc.record({ at: fc.nat(der.length - 1), mask: fc.integer({ min: 1, max: 255 }) }).map(({ at, mask }) => {
      const out = Buffer.from(der);
      out[at] = (out[at] ?? 0) ^ mask;
      return out;
    }),
    fc.nat(der.length - 1).map((n) => der.subarray(0, n)),
    fc
      .record({ at: fc.nat(der.length), bytes: fc.uint8Array({ minLength: 1, maxLength: 8 }) })
      .map(({ at, bytes }) => Buffer.concat([der.subarray(0, at), bytes, der.subarray(at)])),
    fc
      .record({ at: fc.nat(der.length - 1), n: fc.integer({ min: 1, max: 8 }) })
      .map(({ at, n }) => Buffer.concat([der.subarray(0, at), der.subarray(at + n)])),
  );
}

const CSR_CODES = new Set(['invalid_csr', 'csr_signature_invalid', 'invalid_public_key']);

describe('parsers under malformed input (fast-check)', async () => {
  const f = await caFixture();
  after(() => f.close());
  const csr = await opensslCsr(f.dir, ecKeyPair());
  const csrDer = derOf(csr);
  const anchors = TrustAnchors.fromPem((await f.ca.trustBundle()).pem);
  const crl = await f.ca.crl();
  const revocations = await RevocationList.parse(crl.der, anchors);
  const client = await f.ca.issue(admin, {
    profile: 'client',
    publicKey: ecKeyPair().publicPem,
    identity: 'service:fuzz',
  });
  const clientDer = derOf(client.certificate);

  it('CSR: random bytes and text fail with a typed error', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(fc.uint8Array({ maxLength: 512 }), fc.string({ maxLength: 512 })),
        async (input) => {
          await assert.rejects(
            publicKeyFromCsr(input),
            (err: unknown) => err instanceof CaError && CSR_CODES.has(err.code),
          );
        },
      ),
      { numRuns: 200 },
    );
  });

  it('CSR: damaged requests fail with a typed error (or, if the damage is outside the signed bytes, keep the key)', async () => {
    const original = await publicKeyFromCsr(csrDer);
    await fc.assert(
      fc.asyncProperty(mutated(csrDer), async (input) => {
        try {
          const key = await publicKeyFromCsr(input);
          assert.deepEqual(key.spki, original.spki);
        } catch (err) {
          assert.ok(err instanceof CaError && CSR_CODES.has(err.code), String(err));
        }
      }),
      { numRuns: 300 },
    );
  });

  it('CSR: oversized or multi-block PEM is refused before parsing', async () => {
    await assert.rejects(
      publicKeyFromCsr(Buffer.alloc(17 * 1024, 0x30)),
      (err: unknown) => err instanceof CaError,
    );
    await assert.rejects(
      publicKeyFromCsr(csr + csr),
      (err: unknown) => err instanceof CaError && err.code === 'invalid_csr',
    );
    await assert.rejects(
      publicKeyFromCsr(csr.replace(/CERTIFICATE REQUEST/g, 'CERTIFICATE')),
      (err: unknown) => err instanceof CaError && err.code === 'invalid_csr',
    );
  });

  it('client certificates: damaged DER is rejected with ClientCertificateRejectedError only', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          mutated(clientDer),
          fc.uint8Array({ maxLength: 600 }).map((b) => Buffer.from(b)),
        ),
        (input) => {
          try {
            const verified = verifyClientCertificate(input, anchors, revocations);
            assert.equal(verified.principalId, 'service:fuzz');
          } catch (err) {
            assert.ok(err instanceof ClientCertificateRejectedError, String(err));
          }
        },
      ),
      { numRuns: 400 },
    );
  });

  it('CRLs: damaged DER fails with invalid_crl only', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          mutated(crl.der),
          fc.uint8Array({ maxLength: 400 }).map((b) => Buffer.from(b)),
        ),
        async (input) => {
          try {
            await RevocationList.parse(input, anchors);
          } catch (err) {
            assert.ok(err instanceof CaError && err.code === 'invalid_crl', String(err));
          }
        },
      ),
      { numRuns: 200 },
    );
  });

  it('trust bundles: random text fails with a typed error', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 300 }), (text) => {
        assert.throws(
          () => TrustAnchors.fromPem(`-----BEGIN CERTIFICATE-----\n${text}\n-----END CERTIFICATE-----\n`),
          CaError,
        );
      }),
      { numRuns: 200 },
    );
  });

  it('issue: arbitrary DNS names and identities are validated, never certified as given', async () => {
    const publicKey = ecKeyPair().publicPem;
    await fc.assert(
      fc.asyncProperty(
        fc.string({ maxLength: 40 }),
        fc.string({ maxLength: 40 }),
        async (dnsName, identity) => {
          try {
            const issued = await f.ca.issue(admin, { profile: 'server', publicKey, dnsNames: [dnsName] });
            assert.equal(issued.identity, `dns:${dnsName.toLowerCase()}`);
            assert.match(dnsName.toLowerCase(), /^[a-z0-9.-]+$/);
          } catch (err) {
            assert.ok(err instanceof CaError && err.code === 'invalid_request', String(err));
          }
          try {
            const issued = await f.ca.issue(admin, { profile: 'client', publicKey, identity });
            assert.equal(issued.identity, identity);
          } catch (err) {
            assert.ok(err instanceof CaError && err.code === 'invalid_request', String(err));
          }
        },
      ),
      { numRuns: 60 },
    );
  });
});

describe('identity binding', () => {
  const name = fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$/);

  it('principal id ⇄ SPIFFE URI round-trips', () => {
    fc.assert(
      fc.property(fc.constantFrom(...CLIENT_KINDS), name, (kind, n) => {
        const identity = parseClientIdentity(`${kind}:${n}`, 'warden');
        const uri = clientIdentityUri(identity, 'warden');
        assert.equal(uri, `spiffe://warden/${kind}/${n}`);
        assert.deepEqual(identityFromUri(uri, 'warden'), identity);
        assert.equal(identityFromUri(uri, 'other'), undefined);
      }),
    );
  });

  it('arbitrary text either is a valid principal id or is refused', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 140 }), (text) => {
        try {
          assert.equal(parseClientIdentity(text, 'warden').principalId, text);
        } catch (err) {
          assert.ok(err instanceof CaError && err.code === 'invalid_request');
        }
        const parsed = identityFromUri(text, 'warden');
        if (parsed !== undefined) assert.equal(`spiffe://warden/${parsed.kind}/${parsed.name}`, text);
      }),
    );
  });

  it('serial text is canonical whatever the case and padding', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 20 }), (bytes) => {
        const hex = Buffer.from(bytes).toString('hex');
        const canonical = serialHex(hex);
        assert.equal(serialHex(hex.toUpperCase()), canonical);
        assert.equal(serialHex(`00${hex}`), canonical);
        assert.equal(serialHex(bytes), canonical);
        assert.equal(BigInt(`0x${canonical}`), BigInt(`0x${hex}`));
      }),
    );
  });
});

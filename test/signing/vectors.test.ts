import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync, X509Certificate, type KeyObject } from 'node:crypto';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import {
  BundleFormatError,
  CertificateError,
  KeyMismatchError,
  ModelMismatchError,
  parseBundle,
  parseStatement,
  publicKeyHint,
  rootDigest,
  serializeModel,
  SignatureError,
  StatementError,
  UnsupportedError,
  verifyBundle,
  verifyModel,
} from '../../src/signing/index.ts';
import {
  issue,
  omsVectors,
  type RawBundle,
  rejectsWith,
  tempDir,
  throwsWith,
  vectorBundle,
  vectorBytes,
  writeTree,
} from './helpers.ts';

/**
 * The shared OMS v1.0 conformance vectors. They ship bundles only: no model directory and no keys. What they need
 * is recovered from the vectors themselves or rebuilt here:
 * - the key of key.bundle.json is the leaf certificate key of certificate.bundle.json (its `hint` proves it);
 * - the certificate chain's root CA is not shipped, so its intermediate (from the bundle) is the trust anchor;
 * - the signed model is two files whose names and SHA-256 digests are in the manifest; their contents
 *   ("signme-1\n", "signme-2") are rebuilt and checked against those digests before use.
 */

const read = vectorBytes;
const json = vectorBundle;

// Every vector is classified; a vector added upstream fails this suite until it is.
const EXPECTED: Record<string, string> = {
  'valid/key.bundle.json': 'verifies (key method)',
  'valid/certificate.bundle.json': 'verifies (certificate method)',
  'valid/sigstore.bundle.json': 'well-formed; sigstore method unsupported',
  'invalid/empty.bundle.json': 'BundleFormatError',
  'invalid/missing-envelope.bundle.json': 'BundleFormatError',
  'invalid/missing-verification-material.bundle.json': 'BundleFormatError',
  'invalid/missing-tlog-entries.bundle.json': 'BundleFormatError',
  'invalid-payload/wrong-predicate.bundle.json': 'StatementError (payload), SignatureError (bundle)',
};

// Inside the chain's validity (2025-05-02 .. 2035-04-30), fixed so the test does not depend on today's date.
const AT = new Date('2026-01-01T00:00:00Z');

let leafKey: KeyObject;
let intermediate: Buffer;
let modelDir: string;

before(async () => {
  const chain = json('valid/certificate.bundle.json').verificationMaterial.x509CertificateChain!.certificates;
  leafKey = new X509Certificate(Buffer.from(chain[0]!.rawBytes, 'base64')).publicKey;
  intermediate = Buffer.from(chain[1]!.rawBytes, 'base64');
  modelDir = path.join(await tempDir(), 'model');
  await writeTree(modelDir, { 'signme-1': 'signme-1\n', 'signme-2': 'signme-2', 'ignore-me': '' });
});

describe('OMS v1.0 shared vectors: inventory', () => {
  it('classifies every bundle in the shared vectors', () => {
    const found = ['valid', 'invalid', 'invalid-payload'].flatMap((d) =>
      readdirSync(omsVectors(d)).map((f) => `${d}/${f}`),
    );
    assert.deepEqual(found.sort(), Object.keys(EXPECTED).sort());
  });

  it('the rebuilt model files have the digests the vectors sign', () => {
    const statement = parseStatement(parseBundle(read('valid/key.bundle.json')).payload);
    const digests = Object.fromEntries(statement.predicate.resources.map((r) => [r.name, r.digest]));
    assert.deepEqual(digests, {
      'signme-1': createHash('sha256').update('signme-1\n').digest('hex'),
      'signme-2': createHash('sha256').update('signme-2').digest('hex'),
    });
  });
});

describe('OMS v1.0 shared vectors: valid', () => {
  it('key.bundle.json: hint is SHA-256 of the SPKI PEM of the certificate vector leaf key', () => {
    assert.equal(json('valid/key.bundle.json').verificationMaterial.publicKey?.hint, publicKeyHint(leafKey));
  });

  it('key.bundle.json verifies against its model and key', async () => {
    const result = await verifyModel(modelDir, read('valid/key.bundle.json'), { publicKey: leafKey });
    assert.equal(result.method, 'key');
    assert.equal(result.filesVerified, 2);
    assert.equal(result.statement.subject[0].name, 'model');
  });

  it('certificate.bundle.json verifies against its model, anchored at the intermediate CA', async () => {
    const result = await verifyModel(modelDir, read('valid/certificate.bundle.json'), {
      trustedRoots: [intermediate],
      at: AT,
    });
    assert.equal(result.method, 'certificate');
    assert.equal(result.filesVerified, 2);
    assert.ok(result.signingKey.equals(leafKey));
  });

  it('serializing the rebuilt model reproduces the signed manifest and root digest exactly', async () => {
    const signed = parseStatement(parseBundle(read('valid/key.bundle.json')).payload);
    const manifest = await serializeModel(modelDir, { ignorePaths: ['ignore-me'] });
    assert.deepEqual(
      manifest.resources,
      signed.predicate.resources.map(({ name, digest, algorithm }) => ({ name, digest, algorithm })),
    );
    assert.equal(rootDigest(manifest.resources), signed.subject[0].digest.sha256);
    assert.deepEqual(
      manifest.serialization.ignore_paths,
      [...(signed.predicate.serialization.ignore_paths ?? [])].sort(),
    );
  });

  it('sigstore.bundle.json is well-formed, but the sigstore method is refused as unsupported', async () => {
    const parsed = parseBundle(read('valid/sigstore.bundle.json'));
    assert.equal(parsed.verificationMaterial.method, 'sigstore');
    const statement = parseStatement(parsed.payload);
    assert.ok(statement.predicate.serialization.ignore_paths?.includes('model.sig'));
    await rejectsWith(
      () => verifyBundle(read('valid/sigstore.bundle.json'), { publicKey: leafKey }),
      UnsupportedError,
    );
    await rejectsWith(
      () => verifyBundle(read('valid/sigstore.bundle.json'), { trustedRoots: [intermediate] }),
      UnsupportedError,
    );
  });
});

describe('OMS v1.0 shared vectors: invalid', () => {
  for (const name of ['empty', 'missing-envelope', 'missing-verification-material', 'missing-tlog-entries']) {
    it(`invalid/${name}.bundle.json fails to parse with BundleFormatError`, async () => {
      throwsWith(() => parseBundle(read(`invalid/${name}.bundle.json`)), BundleFormatError);
      await rejectsWith(
        () => verifyModel(modelDir, read(`invalid/${name}.bundle.json`), { publicKey: leafKey }),
        BundleFormatError,
      );
    });
  }

  it('missing-tlog-entries: a Fulcio certificate without a transparency log entry is refused for that reason', () => {
    const err = throwsWith(
      () => parseBundle(read('invalid/missing-tlog-entries.bundle.json')),
      BundleFormatError,
    );
    assert.match(err.message, /tlogEntries/);
  });

  it('invalid-payload/wrong-predicate: its payload is not an OMS statement', () => {
    const parsed = parseBundle(read('invalid-payload/wrong-predicate.bundle.json'));
    const err = throwsWith(() => parseStatement(parsed.payload), StatementError);
    assert.match(err.message, /predicateType/);
  });

  it('invalid-payload/wrong-predicate: the signature (copied from key.bundle.json) no longer verifies', async () => {
    // §8.2 before §8.3: the altered payload fails at the signature, before its content is trusted.
    await rejectsWith(
      () =>
        verifyModel(modelDir, read('invalid-payload/wrong-predicate.bundle.json'), { publicKey: leafKey }),
      SignatureError,
    );
  });
});

describe('OMS v1.0 shared vectors: verifier tolerances (§11.2) applied to the valid bundles', () => {
  const keyBundle = (): RawBundle => json('valid/key.bundle.json');

  it('accepts publicKey.rawBytes (PEM, as pre-v1.1.0 reference bundles) with keyDetails instead of hint', async () => {
    const b = keyBundle();
    b.verificationMaterial.publicKey = {
      rawBytes: Buffer.from(leafKey.export({ type: 'spki', format: 'pem' })).toString('base64'),
      keyDetails: 'PKIX_ECDSA_P384_SHA_384',
    };
    await verifyModel(modelDir, b, { publicKey: leafKey });
  });

  it('accepts publicKey.rawBytes as DER SPKI', async () => {
    const b = keyBundle();
    b.verificationMaterial.publicKey = {
      rawBytes: leafKey.export({ type: 'spki', format: 'der' }).toString('base64'),
    };
    await verifyModel(modelDir, b, { publicKey: leafKey });
  });

  it('refuses rawBytes or keyDetails that do not describe the trusted key', async () => {
    const other = generateKeyPairSync('ec', { namedCurve: 'P-384' }).publicKey;
    const b = keyBundle();
    b.verificationMaterial.publicKey = {
      rawBytes: other.export({ type: 'spki', format: 'der' }).toString('base64'),
    };
    await rejectsWith(() => verifyBundle(b, { publicKey: leafKey }), KeyMismatchError);
    b.verificationMaterial.publicKey = {
      rawBytes: leafKey.export({ type: 'spki', format: 'der' }).toString('base64'),
      keyDetails: 'PKIX_ECDSA_P256_SHA_256',
    };
    await rejectsWith(() => verifyBundle(b, { publicKey: leafKey }), KeyMismatchError);
  });

  for (const [label, edit] of [
    ['keyid null', (s: Record<string, unknown>) => (s.keyid = null)],
    ['keyid absent', (s: Record<string, unknown>) => delete s.keyid],
    ['keyid empty', (s: Record<string, unknown>) => (s.keyid = '')],
  ] as const) {
    it(`accepts ${label}`, async () => {
      const b = keyBundle();
      edit(b.dsseEnvelope.signatures[0]!);
      await verifyModel(modelDir, b, { publicKey: leafKey });
    });
  }

  it('accepts absent tlogEntries for the key and certificate methods', async () => {
    const k = keyBundle();
    delete k.verificationMaterial.tlogEntries;
    await verifyModel(modelDir, k, { publicKey: leafKey });
    const c = json('valid/certificate.bundle.json');
    delete c.verificationMaterial.tlogEntries;
    await verifyModel(modelDir, c, { trustedRoots: [intermediate], at: AT });
  });

  it('accepts the alternative spelling of the v0.3 media type', async () => {
    const b = keyBundle();
    b.mediaType = 'application/vnd.dev.sigstore.bundle+json;version=0.3';
    await verifyBundle(b, { publicKey: leafKey });
  });
});

describe('OMS v1.0 shared vectors: refusals', () => {
  it('a different key: KeyMismatchError from the hint, before any signature check', async () => {
    const other = generateKeyPairSync('ec', { namedCurve: 'P-384' }).publicKey;
    await rejectsWith(
      () => verifyBundle(read('valid/key.bundle.json'), { publicKey: other }),
      KeyMismatchError,
    );
  });

  it('a different key under a matching rawBytes still fails on the signature', async () => {
    const other = generateKeyPairSync('ec', { namedCurve: 'P-384' }).publicKey;
    const b = json('valid/key.bundle.json');
    b.verificationMaterial.publicKey = {
      rawBytes: other.export({ type: 'spki', format: 'der' }).toString('base64'),
    };
    await rejectsWith(() => verifyBundle(b, { publicKey: other }), SignatureError);
  });

  it('the certificate bundle against an unrelated root, after expiry, or verified as a key bundle', async () => {
    const unrelated = await issue({ subject: 'Unrelated Root', ca: true });
    const bundle = read('valid/certificate.bundle.json');
    await rejectsWith(
      () => verifyBundle(bundle, { trustedRoots: [new Uint8Array(unrelated.cert.rawData)], at: AT }),
      CertificateError,
    );
    await rejectsWith(
      () => verifyBundle(bundle, { trustedRoots: [intermediate], at: new Date('2036-01-01T00:00:00Z') }),
      CertificateError,
    );
    await rejectsWith(() => verifyBundle(bundle, { publicKey: leafKey }), KeyMismatchError);
    await rejectsWith(
      () => verifyBundle(read('valid/key.bundle.json'), { trustedRoots: [intermediate] }),
      KeyMismatchError,
    );
  });

  it('the valid bundles against a tampered copy of the model', async () => {
    const dir = path.join(await tempDir(), 'model');
    await writeTree(dir, { 'signme-1': 'signme-1\n', 'signme-2': 'signme-3', 'extra.bin': 'x' });
    const err = await rejectsWith(
      () => verifyModel(dir, read('valid/key.bundle.json'), { publicKey: leafKey }),
      ModelMismatchError,
    );
    assert.deepEqual([err.changed, err.extra, err.missing], [['signme-2'], ['extra.bin'], []]);
  });
});

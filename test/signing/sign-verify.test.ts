import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  createHash,
  createPublicKey,
  generateKeyPairSync,
  sign as nodeSign,
  verify as nodeVerify,
  type KeyObject,
} from 'node:crypto';
import { appendFile, readFile, rename, rm, symlink, truncate, writeFile } from 'node:fs/promises';
import path from 'node:path';
import {
  BUNDLE_MEDIA_TYPE,
  CertificateError,
  IN_TOTO_PAYLOAD_TYPE,
  KeyMismatchError,
  localKeySigner,
  ModelMismatchError,
  pae,
  parseBundle,
  PREDICATE_TYPE,
  publicKeyHint,
  rootDigest,
  SerializationError,
  SignatureError,
  signModel,
  STATEMENT_TYPE,
  UnsupportedError,
  verifyBundle,
  verifyModel,
  type Signer,
} from '../../src/signing/index.ts';
import {
  CA_USAGE,
  CODE_SIGNING,
  der,
  issue,
  pki,
  rejectsWith,
  SERVER_AUTH,
  tempDir,
  writeTree,
  x509,
} from './helpers.ts';
import { schemaValid } from './json-schema.ts';

const p256 = (): { privateKey: KeyObject; publicKey: KeyObject } =>
  generateKeyPairSync('ec', { namedCurve: 'P-256' });
const p384 = (): { privateKey: KeyObject; publicKey: KeyObject } =>
  generateKeyPairSync('ec', { namedCurve: 'P-384' });

async function model(): Promise<string> {
  const dir = path.join(await tempDir(), 'llama-tiny');
  await writeTree(dir, {
    'config.json': '{"layers":2}',
    'model-00001-of-00002.safetensors': Buffer.alloc(3000, 1),
    'model-00002-of-00002.safetensors': Buffer.alloc(1500, 2),
    'tokenizer/vocab.txt': 'a\nb\nc\n',
    '.git/HEAD': 'ref: refs/heads/main\n',
  });
  return dir;
}

describe('sign and verify: key method', () => {
  for (const [curve, keys, algorithm] of [
    ['P-256', p256, 'ecdsa-p256-sha256'],
    ['P-384', p384, 'ecdsa-p384-sha384'],
  ] as const) {
    it(`round-trips with a ${curve} key`, async () => {
      const dir = await model();
      const { privateKey, publicKey } = keys();
      const signer = localKeySigner(privateKey);
      assert.equal(signer.algorithm, algorithm);
      const { bundle, statement } = await signModel(dir, signer);
      assert.deepEqual(bundle.verificationMaterial, { publicKey: { hint: publicKeyHint(publicKey) } });
      assert.equal(bundle.mediaType, BUNDLE_MEDIA_TYPE);
      assert.equal(bundle.dsseEnvelope.payloadType, IN_TOTO_PAYLOAD_TYPE);
      assert.equal(statement._type, STATEMENT_TYPE);
      assert.equal(statement.predicateType, PREDICATE_TYPE);
      assert.equal(statement.subject[0].name, 'llama-tiny');
      assert.equal(statement.subject[0].digest.sha256, rootDigest(statement.predicate.resources));
      // The signature is ECDSA with the curve's hash over the DSSE PAE of the exact payload bytes.
      const payload = Buffer.from(bundle.dsseEnvelope.payload, 'base64');
      assert.deepEqual(JSON.parse(payload.toString('utf8')), statement);
      const hash = curve === 'P-256' ? 'sha256' : 'sha384';
      assert.ok(
        nodeVerify(
          hash,
          pae(IN_TOTO_PAYLOAD_TYPE, payload),
          publicKey,
          Buffer.from(bundle.dsseEnvelope.signatures[0]!.sig, 'base64'),
        ),
      );

      // §3.1: what this implementation produces matches the published schemas.
      assert.ok(schemaValid('bundle', bundle));
      assert.ok(schemaValid('statement', statement));
      const text = JSON.stringify(bundle);
      const result = await verifyModel(dir, text, {
        publicKey: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
      });
      assert.equal(result.filesVerified, 4);
      assert.equal(result.method, 'key');
    });
  }

  it('round-trips with shards and with BLAKE2b', async () => {
    const dir = await model();
    const { privateKey, publicKey } = p256();
    for (const options of [
      { method: 'shards' as const, shardSize: 1024 },
      { hashAlgorithm: 'blake2b' as const },
    ]) {
      const { bundle, statement } = await signModel(dir, localKeySigner(privateKey), options);
      assert.ok(schemaValid('bundle', bundle) && schemaValid('statement', statement));
      await verifyModel(dir, bundle, { publicKey });
      if (options.hashAlgorithm === undefined) {
        assert.ok(
          statement.predicate.resources.some((r) => r.name === 'model-00001-of-00002.safetensors:2048:3000'),
        );
      }
    }
  });

  it('round-trips a single-file model', async () => {
    const dir = await model();
    const file = path.join(dir, 'config.json');
    const { privateKey, publicKey } = p384();
    const { bundle, statement } = await signModel(file, localKeySigner(privateKey));
    assert.deepEqual(
      statement.predicate.resources.map((r) => r.name),
      ['config.json'],
    );
    await verifyModel(file, bundle, { publicKey });
    await writeFile(file, '{"layers":3}');
    await rejectsWith(() => verifyModel(file, bundle, { publicKey }), ModelMismatchError);
  });

  it('excludes the signature file inside the model on both sides', async () => {
    const dir = await model();
    const sigPath = path.join(dir, 'model.sig');
    const { privateKey, publicKey } = p256();
    const { bundle } = await signModel(dir, localKeySigner(privateKey), { signaturePath: sigPath });
    await writeFile(sigPath, JSON.stringify(bundle));
    // Recorded in ignore_paths, so a verifier that is not told where the signature is still skips it.
    await verifyModel(dir, await readFile(sigPath), { publicKey });
    await verifyModel(dir, bundle, { publicKey }, { signaturePath: sigPath });
  });

  it('refuses a key of an unsupported type, and a signer that lies about its key or returns a bad signature', async () => {
    const ed = generateKeyPairSync('ed25519').privateKey;
    assert.throws(() => localKeySigner(ed), UnsupportedError);
    assert.throws(
      () => localKeySigner(generateKeyPairSync('ec', { namedCurve: 'secp521r1' }).privateKey),
      UnsupportedError,
    );
    assert.throws(() => localKeySigner(p256().publicKey), KeyMismatchError);

    const dir = await model();
    const honest = localKeySigner(p256().privateKey) as Signer & { publicKeyPem: string };
    const otherPem = p256().publicKey.export({ type: 'spki', format: 'pem' }).toString();
    await rejectsWith(() => signModel(dir, { ...honest, publicKeyPem: otherPem }), SignatureError);
    await rejectsWith(() => signModel(dir, { ...honest, algorithm: 'ecdsa-p384-sha384' }), KeyMismatchError);
    await rejectsWith(
      () => signModel(dir, { ...honest, sign: () => Promise.resolve(new Uint8Array(70)) }),
      SignatureError,
    );
  });

  it('works with a remote-style signer that only exposes sign() and the public key', async () => {
    const { privateKey, publicKey } = p384();
    // What a KMS adapter looks like: it never hands out the private key.
    const kms: Signer = {
      algorithm: 'ecdsa-p384-sha384',
      publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString().replace(/\n/g, '\r\n'),
      sign: (data) => Promise.resolve(nodeSign('sha384', data, { key: privateKey, dsaEncoding: 'der' })),
    };
    const dir = await model();
    const { bundle } = await signModel(dir, kms);
    // The hint does not depend on how the KMS formats its PEM.
    assert.deepEqual(bundle.verificationMaterial, { publicKey: { hint: publicKeyHint(publicKey) } });
    await verifyModel(dir, bundle, { publicKey });
  });
});

describe('sign and verify: certificate method', () => {
  it('round-trips with a CA, an intermediate and a code-signing leaf', async () => {
    const { root, intermediate, leaf } = await pki('P-384');
    const dir = await model();
    const signer = localKeySigner(leaf.privateKey, {
      certificateChain: [der(leaf), intermediate.cert.toString('pem')],
    });
    const { bundle } = await signModel(dir, signer);
    assert.ok(schemaValid('bundle', bundle));
    assert.deepEqual(
      'x509CertificateChain' in bundle.verificationMaterial &&
        bundle.verificationMaterial.x509CertificateChain.certificates.map((c) => c.rawBytes),
      [Buffer.from(der(leaf)).toString('base64'), Buffer.from(der(intermediate)).toString('base64')],
    );
    const result = await verifyModel(dir, bundle, { trustedRoots: [root.cert.toString('pem')] });
    assert.equal(result.method, 'certificate');
    assert.ok(result.signingKey.equals(createPublicKey(leaf.privateKey)));
    // A PEM bundle of several anchors, DER anchors, and the intermediate itself as a (partial-chain) anchor.
    const other = await issue({ subject: 'Other Root', ca: true, keyUsage: CA_USAGE });
    await verifyBundle(bundle, {
      trustedRoots: [`${other.cert.toString('pem')}\n${root.cert.toString('pem')}`],
    });
    await verifyBundle(bundle, { trustedRoots: [der(root)] });
    await verifyBundle(bundle, { trustedRoots: [der(intermediate)] });
    await rejectsWith(() => verifyBundle(bundle, { trustedRoots: [der(other)] }), CertificateError);
    await rejectsWith(() => verifyBundle(bundle, { trustedRoots: [] }), CertificateError);
    await rejectsWith(() => verifyBundle(bundle, { trustedRoots: ['not a pem'] }), CertificateError);
  });

  it('checks validity at the given time (default now)', async () => {
    const { root, intermediate, leaf } = await pki();
    const dir = await model();
    const { bundle } = await signModel(
      dir,
      localKeySigner(leaf.privateKey, { certificateChain: [der(leaf), der(intermediate)] }),
    );
    const anchors = [der(root)];
    await rejectsWith(
      () => verifyBundle(bundle, { trustedRoots: anchors, at: new Date(Date.now() + 2 * 365 * 86400_000) }),
      CertificateError,
    );
    await rejectsWith(
      () => verifyBundle(bundle, { trustedRoots: anchors, at: new Date(Date.now() - 86400_000) }),
      CertificateError,
    );
  });

  async function signWithLeaf(
    leafSpec: Parameters<typeof issue>[0],
    intermediateSpec?: Partial<Parameters<typeof issue>[0]>,
  ) {
    const root = await issue({ subject: 'Root', curve: 'P-384', ca: true, keyUsage: CA_USAGE });
    const intermediate = await issue({
      subject: 'Intermediate',
      issuer: root,
      ca: true,
      keyUsage: CA_USAGE,
      ...intermediateSpec,
    });
    const leaf = await issue({ ...leafSpec, issuer: intermediate });
    const dir = await model();
    const { bundle } = await signModel(
      dir,
      localKeySigner(leaf.privateKey, { certificateChain: [der(leaf), der(intermediate)] }),
    );
    return () => verifyBundle(bundle, { trustedRoots: [der(root)] });
  }

  it('refuses a leaf not meant for code signing', async () => {
    const digitalSignature = x509.KeyUsageFlags.digitalSignature;
    await rejectsWith(
      await signWithLeaf({ subject: 'tls', keyUsage: digitalSignature, extendedKeyUsage: [SERVER_AUTH] }),
      CertificateError,
    );
    await rejectsWith(
      await signWithLeaf({ subject: 'enc', keyUsage: x509.KeyUsageFlags.keyEncipherment }),
      CertificateError,
    );
    await rejectsWith(await signWithLeaf({ subject: 'nothing' }), CertificateError);
    // keyUsage alone, or extendedKeyUsage alone, is enough.
    await (
      await signWithLeaf({ subject: 'ku', keyUsage: digitalSignature })
    )();
    await (
      await signWithLeaf({ subject: 'eku', extendedKeyUsage: [CODE_SIGNING] })
    )();
  });

  it('refuses an issuer that is not a CA, may not sign certificates, or exceeds its path length', async () => {
    const leaf = { subject: 'leaf', extendedKeyUsage: [CODE_SIGNING] };
    await rejectsWith(await signWithLeaf(leaf, { ca: false }), CertificateError);
    await rejectsWith(await signWithLeaf(leaf, { ca: undefined }), CertificateError);
    await rejectsWith(
      await signWithLeaf(leaf, { keyUsage: x509.KeyUsageFlags.digitalSignature }),
      CertificateError,
    );

    const root = await issue({ subject: 'Root', ca: true, pathLength: 0, keyUsage: CA_USAGE });
    const intermediate = await issue({ subject: 'Intermediate', issuer: root, ca: true, keyUsage: CA_USAGE });
    const l = await issue({ ...leaf, issuer: intermediate });
    const { bundle } = await signModel(
      await model(),
      localKeySigner(l.privateKey, { certificateChain: [der(l), der(intermediate)] }),
    );
    await rejectsWith(() => verifyBundle(bundle, { trustedRoots: [der(root)] }), CertificateError);
  });

  it('refuses an unknown critical extension and a chain out of order', async () => {
    const critical = new x509.Extension('1.2.3.4.5', true, new Uint8Array([5, 0]).buffer);
    await rejectsWith(
      await signWithLeaf({ subject: 'c', extendedKeyUsage: [CODE_SIGNING], extraExtensions: [critical] }),
      CertificateError,
    );

    const { root, intermediate, leaf } = await pki();
    const { bundle } = await signModel(
      await model(),
      localKeySigner(leaf.privateKey, { certificateChain: [der(leaf), der(root), der(intermediate)] }),
    );
    await rejectsWith(() => verifyBundle(bundle, { trustedRoots: [der(root)] }), CertificateError);
  });

  it('refuses a signer whose leaf certificate is for another key', async () => {
    const { intermediate, leaf } = await pki();
    assert.throws(
      () => localKeySigner(p256().privateKey, { certificateChain: [der(leaf), der(intermediate)] }),
      KeyMismatchError,
    );
  });
});

describe('verify: tampering', () => {
  async function signed(options = {}) {
    const dir = await model();
    const { privateKey, publicKey } = p256();
    const { bundle } = await signModel(dir, localKeySigner(privateKey), options);
    return { dir, bundle, publicKey };
  }

  const mismatch = async (
    dir: string,
    bundle: object,
    publicKey: KeyObject,
  ): Promise<[readonly string[], readonly string[], readonly string[]]> => {
    const err = await rejectsWith(() => verifyModel(dir, bundle, { publicKey }), ModelMismatchError);
    return [err.changed, err.missing, err.extra];
  };

  for (const method of ['files', 'shards'] as const) {
    const options = method === 'shards' ? { method, shardSize: 1000 } : {};

    it(`${method}: detects a changed byte, same size`, async () => {
      const { dir, bundle, publicKey } = await signed(options);
      const f = path.join(dir, 'model-00002-of-00002.safetensors');
      const data = Buffer.alloc(1500, 2);
      data[1200] = 3;
      await writeFile(f, data);
      assert.deepEqual(await mismatch(dir, bundle, publicKey), [
        ['model-00002-of-00002.safetensors'],
        [],
        [],
      ]);
    });

    it(`${method}: detects a grown file`, async () => {
      const { dir, bundle, publicKey } = await signed(options);
      await appendFile(path.join(dir, 'config.json'), ' ');
      assert.deepEqual(await mismatch(dir, bundle, publicKey), [['config.json'], [], []]);
    });

    it(`${method}: detects an extra file, unless unsigned files are allowed`, async () => {
      const { dir, bundle, publicKey } = await signed(options);
      await writeTree(dir, { 'tokenizer/merges.txt': 'x' });
      assert.deepEqual(await mismatch(dir, bundle, publicKey), [[], [], ['tokenizer/merges.txt']]);
      const ok = await verifyModel(dir, bundle, { publicKey }, { ignoreUnsignedFiles: true });
      assert.equal(ok.filesVerified, 4);
      await verifyModel(dir, bundle, { publicKey }, { ignorePaths: ['tokenizer/merges.txt'] });
    });

    it(`${method}: detects a removed file and a renamed file`, async () => {
      const { dir, bundle, publicKey } = await signed(options);
      await rm(path.join(dir, 'tokenizer/vocab.txt'));
      assert.deepEqual(await mismatch(dir, bundle, publicKey), [[], ['tokenizer/vocab.txt'], []]);
      await rename(path.join(dir, 'config.json'), path.join(dir, 'Config.json'));
      assert.deepEqual(await mismatch(dir, bundle, publicKey), [
        [],
        ['config.json', 'tokenizer/vocab.txt'],
        ['Config.json'],
      ]);
    });
  }

  it('reports a huge file under a tiny signed shard size as changed, without planning or reading its shards', async () => {
    const dir = await tempDir();
    await writeTree(dir, { 'config.json': '{"layers":2}', 'w.bin': 'w' });
    const { privateKey, publicKey } = p256();
    const { bundle } = await signModel(dir, localKeySigner(privateKey), { method: 'shards', shardSize: 1 });
    // Sparse: 64 GB of apparent size, 64 billion one-byte shards if anything tried to list them.
    await truncate(path.join(dir, 'config.json'), 64e9);
    assert.deepEqual(await mismatch(dir, bundle, publicKey), [['config.json'], [], []]);
  });

  it('refuses a symlink added to the model, even where the bundle allowed symlinks, unless the caller opts in', async () => {
    const { dir, bundle, publicKey } = await signed();
    await symlink('config.json', path.join(dir, 'alias.json'));
    await rejectsWith(() => verifyModel(dir, bundle, { publicKey }), SerializationError);

    const withLinks = await signed({ allowSymlinks: true });
    await symlink('config.json', path.join(withLinks.dir, 'alias.json'));
    await rejectsWith(
      () => verifyModel(withLinks.dir, withLinks.bundle, { publicKey: withLinks.publicKey }),
      SerializationError,
    );
    const err = await rejectsWith(
      () =>
        verifyModel(
          withLinks.dir,
          withLinks.bundle,
          { publicKey: withLinks.publicKey },
          { allowSymlinks: true },
        ),
      ModelMismatchError,
    );
    assert.deepEqual(err.extra, ['alias.json']);
  });

  it('a symlink-following bundle verifies when the caller opts in', async () => {
    const dir = await model();
    await symlink('config.json', path.join(dir, 'alias.json'));
    const { privateKey, publicKey } = p256();
    const { bundle } = await signModel(dir, localKeySigner(privateKey), { allowSymlinks: true });
    const result = await verifyModel(dir, bundle, { publicKey }, { allowSymlinks: true });
    assert.equal(result.filesVerified, 5);
  });

  it('detects a modified payload, a swapped signature and a different key', async () => {
    const { dir, bundle, publicKey } = await signed();
    const statement = JSON.parse(Buffer.from(bundle.dsseEnvelope.payload, 'base64').toString('utf8')) as {
      predicate: { resources: { digest: string }[] };
    };
    statement.predicate.resources[0]!.digest = createHash('sha256').update('evil').digest('hex');
    const forged = {
      ...bundle,
      dsseEnvelope: {
        ...bundle.dsseEnvelope,
        payload: Buffer.from(JSON.stringify(statement)).toString('base64'),
      },
    };
    await rejectsWith(() => verifyModel(dir, forged, { publicKey }), SignatureError);

    const other = await signed();
    const swapped = {
      ...bundle,
      dsseEnvelope: { ...bundle.dsseEnvelope, signatures: other.bundle.dsseEnvelope.signatures },
    };
    await rejectsWith(() => verifyModel(dir, swapped, { publicKey }), SignatureError);
    await rejectsWith(() => verifyModel(dir, bundle, { publicKey: other.publicKey }), KeyMismatchError);
  });

  it('accepts a pre-v1.1.0-shaped bundle: rawBytes + keyDetails, keyid null, no tlogEntries, no ignore_paths', async () => {
    const dir = await model();
    const { privateKey, publicKey } = p384();
    const resources = [
      ['config.json', '{"layers":2}'],
      ['model-00001-of-00002.safetensors', Buffer.alloc(3000, 1)],
      ['model-00002-of-00002.safetensors', Buffer.alloc(1500, 2)],
      ['tokenizer/vocab.txt', 'a\nb\nc\n'],
    ].map(([name, content]) => ({
      name: name as string,
      algorithm: 'sha256' as const,
      digest: createHash('sha256').update(content!).digest('hex'),
    }));
    const statement = {
      _type: STATEMENT_TYPE,
      subject: [{ name: 'model', digest: { sha256: rootDigest(resources) } }],
      predicateType: PREDICATE_TYPE,
      predicate: {
        serialization: { method: 'files', hash_type: 'sha256', allow_symlinks: false },
        resources,
      },
    };
    const payload = Buffer.from(JSON.stringify(statement, null, 2));
    const sig = nodeSign('sha384', pae(IN_TOTO_PAYLOAD_TYPE, payload), {
      key: privateKey,
      dsaEncoding: 'der',
    });
    const bundle = {
      mediaType: BUNDLE_MEDIA_TYPE,
      verificationMaterial: {
        publicKey: {
          rawBytes: Buffer.from(publicKey.export({ type: 'spki', format: 'pem' }).toString()).toString(
            'base64',
          ),
          keyDetails: 'PKIX_ECDSA_P384_SHA_384',
        },
      },
      dsseEnvelope: {
        payload: payload.toString('base64'),
        payloadType: IN_TOTO_PAYLOAD_TYPE,
        signatures: [{ sig: sig.toString('base64'), keyid: null }],
      },
    };
    assert.equal(parseBundle(bundle).verificationMaterial.method, 'key');
    // The default exclusions still apply without ignore_paths: the model's .git directory is skipped.
    const result = await verifyModel(dir, bundle, { publicKey });
    assert.equal(result.filesVerified, 4);
  });
});

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync } from 'node:crypto';
import fc from 'fast-check';
import {
  BundleFormatError,
  ModelSigningError,
  pae,
  parseBundle,
  parseStatement,
  PREDICATE_TYPE,
  rootDigest,
  STATEMENT_TYPE,
  StatementError,
  UnsupportedError,
  verifyBundle,
} from '../../src/signing/index.ts';
import { onlyTypedErrors, throwsWith, vectorBundle, type RawBundle } from './helpers.ts';
import { schemaValid } from './json-schema.ts';

/** A statement as raw JSON that tests may break on purpose (see RawBundle). */
interface RawStatement {
  _type: unknown;
  subject: { name: unknown; digest: Record<string, string> }[];
  predicateType: unknown;
  predicate: {
    resources: { name: string; digest: string; algorithm: unknown; [extra: string]: unknown }[];
    serialization: Record<string, unknown>;
    [extra: string]: unknown;
  };
  [extra: string]: unknown;
}

const clone = <T>(v: T): T => structuredClone(v);

/**
 * Replaces the value at a pseudo-random path (one index per level, modulo the keys there) with `replacement`, or
 * deletes it when `replacement` is undefined. Walks at most `steps.length` levels.
 */
function mutateAt(root: unknown, steps: readonly number[], replacement: unknown): void {
  let node = root;
  for (const [i, step] of steps.entries()) {
    if (typeof node !== 'object' || node === null) return;
    const obj = node as Record<string, unknown>;
    const keys = Object.keys(obj);
    const key = keys[step % Math.max(keys.length, 1)];
    if (key === undefined) return;
    if (i === steps.length - 1 || typeof obj[key] !== 'object' || obj[key] === null) {
      if (replacement === undefined) Reflect.deleteProperty(obj, key);
      else obj[key] = replacement;
      return;
    }
    node = obj[key];
  }
}

describe('DSSE PAE', () => {
  it('matches the DSSE protocol example', () => {
    assert.equal(
      pae('http://example.com/HelloWorld', Buffer.from('hello world')).toString(),
      'DSSEv1 29 http://example.com/HelloWorld 11 hello world',
    );
  });

  it('counts bytes, not characters', () => {
    assert.equal(pae('t', Buffer.from('é')).toString(), 'DSSEv1 1 t 2 é');
  });
});

describe('published JSON Schemas (independent validator) vs the shared vectors', () => {
  const payloadOf = (b: RawBundle): unknown =>
    JSON.parse(Buffer.from(b.dsseEnvelope.payload, 'base64').toString('utf8'));

  it('valid bundles and their statements match all four schemas', () => {
    for (const name of ['key', 'certificate', 'sigstore']) {
      const b = vectorBundle(`valid/${name}.bundle.json`);
      assert.ok(schemaValid('bundle', b), name);
      assert.ok(schemaValid('envelope', b.dsseEnvelope), name);
      assert.ok(schemaValid('statement', payloadOf(b)), name);
    }
  });

  it('invalid bundles fail the bundle schema; the wrong predicate fails the statement schema', () => {
    for (const name of ['missing-envelope', 'missing-verification-material', 'missing-tlog-entries']) {
      assert.equal(schemaValid('bundle', vectorBundle(`invalid/${name}.bundle.json`)), false, name);
    }
    const wrong = vectorBundle('invalid-payload/wrong-predicate.bundle.json');
    assert.equal(schemaValid('bundle', wrong), true);
    assert.equal(schemaValid('statement', payloadOf(wrong)), false);
  });
});

describe('parseBundle: strictness', () => {
  const key = (): RawBundle => vectorBundle('valid/key.bundle.json');

  const refuses = (mutate: (b: RawBundle) => unknown, pattern?: RegExp): void => {
    const b = key();
    mutate(b);
    const err = throwsWith(() => parseBundle(b), BundleFormatError);
    if (pattern !== undefined) assert.match(err.message, pattern);
  };

  it('accepts text, bytes and objects alike', () => {
    const text = JSON.stringify(key());
    const a = parseBundle(text);
    assert.deepEqual(parseBundle(Buffer.from(text)), a);
    assert.deepEqual(parseBundle(key()), a);
    assert.equal(a.verificationMaterial.method, 'key');
  });

  it('refuses non-JSON, non-UTF-8, empty and non-object input', () => {
    for (const input of ['', '   ', '{', 'null', '[]', '"x"', '\ufeff{}'])
      throwsWith(() => parseBundle(input), BundleFormatError);
    throwsWith(() => parseBundle(Buffer.from([0x7b, 0xff, 0x7d])), BundleFormatError);
    throwsWith(() => parseBundle({ toJSON: () => undefined }), BundleFormatError);
    throwsWith(() => parseBundle({ n: 10n }), BundleFormatError);
  });

  it('refuses unknown top-level and envelope fields (additionalProperties: false)', () => {
    refuses((b) => (b.messageSignature = {}), /messageSignature/);
    refuses((b) => (b.dsseEnvelope.extra = 1), /extra/);
    refuses((b) => (b.dsseEnvelope.signatures[0]!.extra = 1), /extra/);
  });

  it('validates the media type', () => {
    refuses((b) => (b.mediaType = 'application/json'));
    refuses((b) => (b.mediaType = 'application/vnd.dev.sigstore.bundle+json;version=0.2'), /media type/);
    refuses((b) => (b.mediaType = 'application/vnd.dev.sigstore.bundle.v0.4+json'), /media type/);
  });

  it('validates the envelope', () => {
    refuses((b) => (b.dsseEnvelope.payloadType = 'application/json'));
    refuses((b) => (b.dsseEnvelope.payload = ''));
    refuses((b) => (b.dsseEnvelope.signatures = []));
    refuses((b) => (b.dsseEnvelope.signatures[0]!.sig = ''));
    refuses((b) => (b.dsseEnvelope.signatures[0]!.keyid = 7));
    refuses((b) => delete b.dsseEnvelope.signatures[0]!.sig);
  });

  it('requires canonical standard base64', () => {
    const b = key();
    b.dsseEnvelope.signatures[0]!.sig = '+/A=';
    assert.deepEqual(parseBundle(b).signatures[0], Buffer.from([0xfb, 0xf0]));
    for (const bad of ['QUI', 'QUJ', '-_A=', 'QU JD', 'QUJD\n', 'QUJD====', 'QR==']) {
      refuses((b) => (b.dsseEnvelope.signatures[0]!.sig = bad), /base64/);
    }
    refuses((b) => (b.dsseEnvelope.payload = `${b.dsseEnvelope.payload}\n`), /base64/);
  });

  it('requires exactly one kind of verification material, and a usable one', () => {
    refuses((b) => (b.verificationMaterial = {}), /exactly one/);
    refuses(
      (b) => (b.verificationMaterial.x509CertificateChain = { certificates: [{ rawBytes: 'QUJD' }] }),
      /exactly one/,
    );
    refuses((b) => (b.verificationMaterial.publicKey = {}));
    refuses((b) => (b.verificationMaterial.publicKey = { hint: '' }), /identifies no key/);
    refuses((b) => (b.verificationMaterial.publicKey = { hint: 5 }));
    refuses((b) => (b.verificationMaterial.publicKey = { rawBytes: 'QUJD', keyDetails: 3 }));
    refuses((b) => (b.verificationMaterial = { x509CertificateChain: { certificates: [] } }));
    refuses((b) => (b.verificationMaterial = { x509CertificateChain: { certificates: [{ rawBytes: '' }] } }));
    refuses(
      (b) => (b.verificationMaterial = { certificate: { rawBytes: 'QUJD' }, tlogEntries: [] }),
      /tlogEntries/,
    );
    refuses((b) => (b.verificationMaterial.tlogEntries = [{ logIndex: 5 }]));
    refuses((b) => (b.verificationMaterial.timestampVerificationData = { rfc3161Timestamps: {} }));
  });

  it('keeps what the schema leaves open: extra fields in verification material and public key', () => {
    const b = key();
    b.verificationMaterial.somethingNew = { x: 1 };
    b.verificationMaterial.publicKey!.extra = true;
    assert.equal(parseBundle(b).verificationMaterial.method, 'key');
  });
});

describe('parseStatement: strictness', () => {
  const resources = [
    { name: 'a', digest: createHash('sha256').update('a').digest('hex'), algorithm: 'sha256' },
    { name: 'b/c', digest: createHash('sha256').update('c').digest('hex'), algorithm: 'sha256' },
  ];
  const statement = (): RawStatement => ({
    _type: STATEMENT_TYPE,
    subject: [{ name: 'm', digest: { sha256: rootDigest(resources) } }],
    predicateType: PREDICATE_TYPE,
    predicate: {
      resources: clone(resources),
      serialization: { method: 'files', hash_type: 'sha256', allow_symlinks: false },
    },
  });
  const encode = (s: RawStatement): Buffer => Buffer.from(JSON.stringify(s));
  const refuses = (mutate: (s: RawStatement) => unknown, pattern?: RegExp): void => {
    const s = statement();
    mutate(s);
    const err = throwsWith(() => parseStatement(encode(s)), StatementError);
    if (pattern !== undefined) assert.match(err.message, pattern);
  };

  it('accepts a valid statement, unsorted resources and extra resource fields', () => {
    parseStatement(encode(statement()));
    const s = statement();
    s.predicate.resources.reverse();
    s.subject[0]!.digest.sha256 = rootDigest(s.predicate.resources);
    s.predicate.resources[0]!.annotations = { note: 'ignored' };
    parseStatement(encode(s));
  });

  it('enforces the statement and predicate schemas', () => {
    refuses((s) => (s._type = 'https://in-toto.io/Statement/v0.1'));
    refuses((s) => (s.predicateType = 'https://example.com/other'), /predicateType/);
    refuses((s) => s.subject.push(s.subject[0]!));
    refuses((s) => (s.subject[0]!.name = ''));
    refuses((s) => (s.subject[0]!.digest = {}));
    refuses((s) => (s.extra = 1));
    refuses((s) => (s.predicate.extra = 1));
    refuses((s) => (s.predicate.serialization.extra = 1));
    refuses((s) => (s.predicate.resources = []));
    refuses((s) => (s.predicate.resources[0]!.digest = s.predicate.resources[0]!.digest.toUpperCase()));
    refuses((s) => (s.predicate.resources[0]!.algorithm = 'md5'));
    refuses((s) => delete s.predicate.serialization.allow_symlinks);
    refuses((s) => (s.predicate.serialization.method = 'tar'));
  });

  it('enforces the rules the spec states in prose', () => {
    refuses((s) => (s.predicate.serialization.shard_size = 10), /shard_size/);
    refuses((s) => (s.predicate.serialization.method = 'shards'), /shard_size/);
    refuses((s) => (s.predicate.serialization.ignore_paths = ['*.tmp']), /glob/);
    refuses((s) => (s.predicate.serialization.ignore_paths = ['../up']));
    refuses((s) => (s.predicate.serialization.hash_type = 'blake2b'), /uses sha256/);
    refuses((s) => (s.predicate.resources[1]!.name = 'a'), /twice/);
    refuses((s) => (s.predicate.resources[0]!.digest = 'ab'), /length/);
    refuses((s) => (s.subject[0]!.digest = { sha512: 'ab' }), /SHA-256/);
    refuses((s) => (s.subject[0]!.digest.sha256 = '0'.repeat(64)), /root digest/);
    for (const name of ['../a', '/a', 'a//b', './a', 'a\\b', 'a/', '\ud800']) {
      refuses((s) => {
        s.predicate.resources[0]!.name = name;
        s.subject[0]!.digest.sha256 = rootDigest(s.predicate.resources);
      }, /resource name/);
    }
  });

  it('checks shard names against the shard size', () => {
    const shards = (names: string[]): RawStatement => {
      const s = statement();
      s.predicate.serialization = {
        method: 'shards',
        hash_type: 'sha256',
        shard_size: 10,
        allow_symlinks: false,
      };
      s.predicate.resources = names.map((name) => ({ name, digest: 'a'.repeat(64), algorithm: 'sha256' }));
      s.subject[0]!.digest.sha256 = rootDigest(s.predicate.resources);
      return s;
    };
    parseStatement(encode(shards(['w:0:10', 'w:10:15', 'x:y:0:3'])));
    for (const bad of ['w:0:11', 'w:5:10', 'w', 'w:0', '../w:0:10']) {
      throwsWith(() => parseStatement(encode(shards([bad]))), StatementError);
    }
  });

  it('recognises the deprecated v0.1 predicate and refuses it as unsupported', () => {
    const s = statement();
    s.predicateType = 'https://model_signing/Digests/v0.1';
    throwsWith(() => parseStatement(encode(s)), UnsupportedError);
  });

  it('refuses payloads that are not UTF-8 JSON', () => {
    for (const p of [Buffer.from([0xff]), Buffer.from('{'), Buffer.from('[]')])
      throwsWith(() => parseStatement(p), StatementError);
  });
});

describe('fuzz: parsers throw only typed errors', () => {
  const valid = ['valid/key.bundle.json', 'valid/certificate.bundle.json', 'valid/sigstore.bundle.json'].map(
    vectorBundle,
  );

  // A valid bundle with the value at a random path replaced by an arbitrary JSON value, or deleted.
  const mutated = fc
    .tuple(
      fc.constantFrom(...valid),
      fc.array(fc.nat(), { minLength: 1, maxLength: 6 }),
      fc.option(fc.jsonValue(), { nil: undefined }),
    )
    .map(([base, steps, replacement]) => {
      const copy = clone(base);
      mutateAt(copy, steps, replacement);
      return copy;
    });

  it('parseBundle on arbitrary JSON values, strings and bytes', () => {
    const check = (v: unknown): void => {
      onlyTypedErrors(() => parseBundle(v as object));
    };
    fc.assert(fc.property(fc.jsonValue(), check), { numRuns: 500 });
    fc.assert(fc.property(fc.string(), check), { numRuns: 500 });
    fc.assert(fc.property(fc.uint8Array(), check), { numRuns: 300 });
    fc.assert(fc.property(fc.anything(), check), { numRuns: 300 });
  });

  it('parseBundle and parseStatement on mutated valid bundles', () => {
    fc.assert(
      fc.property(mutated, (b) => {
        onlyTypedErrors(() => parseStatement(parseBundle(b).payload));
      }),
      { numRuns: 2000 },
    );
  });

  it('parseStatement on mutated valid statements and arbitrary bytes', () => {
    const statement: unknown = JSON.parse(
      Buffer.from(valid[0]!.dsseEnvelope.payload, 'base64').toString('utf8'),
    );
    const mutatedStatement = fc
      .tuple(
        fc.array(fc.nat(), { minLength: 1, maxLength: 6 }),
        fc.option(fc.jsonValue(), { nil: undefined }),
      )
      .map(([steps, replacement]) => {
        const copy = clone(statement);
        mutateAt(copy, steps, replacement);
        return Buffer.from(JSON.stringify(copy));
      });
    const check = (p: Uint8Array): void => {
      onlyTypedErrors(() => parseStatement(p));
    };
    fc.assert(fc.property(mutatedStatement, check), { numRuns: 2000 });
    fc.assert(fc.property(fc.uint8Array(), check), { numRuns: 300 });
  });

  it('differential: whatever the parsers accept, the published JSON Schemas accept too', () => {
    let accepted = 0;
    fc.assert(
      fc.property(mutated, (b) => {
        let payload: Uint8Array;
        try {
          payload = parseBundle(b).payload;
        } catch {
          return;
        }
        assert.ok(schemaValid('bundle', b), JSON.stringify(b).slice(0, 300));
        try {
          parseStatement(payload);
        } catch {
          return;
        }
        accepted++;
        assert.ok(schemaValid('statement', JSON.parse(Buffer.from(payload).toString('utf8'))));
      }),
      { numRuns: 2000 },
    );
    assert.ok(accepted > 0);
  });

  it('verifyBundle on mutated valid bundles rejects only with typed errors', async () => {
    const publicKey = generateKeyPairSync('ec', { namedCurve: 'P-384' }).publicKey;
    await fc.assert(
      fc.asyncProperty(mutated, async (b) => {
        try {
          await verifyBundle(b, { publicKey });
        } catch (err) {
          if (!(err instanceof ModelSigningError)) throw err;
        }
      }),
      { numRuns: 300 },
    );
  });
});

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createSecretKey, generateKeyPairSync } from 'node:crypto';
import { format, inspect } from 'node:util';
import { InvalidKeyError } from '../../src/crypto/errors.ts';
import {
  AeadKey,
  HkdfInputKey,
  MacKey,
  WrappingKey,
  keyObjectOf,
  requireKey,
} from '../../src/crypto/keys.ts';
import { Ed25519PrivateKey, Ed25519PublicKey } from '../../src/crypto/ed25519.ts';
import { X25519PrivateKey } from '../../src/crypto/x25519.ts';

// A recognisable pattern, so any leak of the bytes in any encoding can be searched for.
const secret = Buffer.from(Array.from({ length: 32 }, (_, i) => 0xa0 ^ i));
const head = Array.from(secret.subarray(0, 4));
const encodings = [
  secret.toString('hex').slice(0, 8),
  secret.toString('base64').slice(0, 8),
  secret.toString('base64url').slice(0, 8),
  head.map((b) => b.toString(16)).join(' '), // <Buffer a0 a1 ...>
  head.join(','), // JSON of a Buffer or Uint8Array
  head.join(', '), // inspect of a Uint8Array
];

function assertNoLeak(rendered: string): void {
  for (const encoded of encodings) assert.ok(!rendered.includes(encoded), `key bytes leaked: ${rendered}`);
}

describe('secret keys', () => {
  it('have fixed lengths for AES keys and bounded lengths for MAC and HKDF keys', () => {
    for (const type of [AeadKey, WrappingKey]) {
      assert.equal(type.generate().byteLength, 32);
      assert.equal(type.fromBytes(secret).byteLength, 32);
      for (const n of [0, 16, 24, 31, 33, 64]) {
        assert.throws(() => type.fromBytes(Buffer.alloc(n)), InvalidKeyError);
      }
    }
    for (const type of [MacKey, HkdfInputKey]) {
      assert.equal(type.generate().byteLength, 32);
      for (const n of [16, 32, 65, 1024]) assert.equal(type.fromBytes(Buffer.alloc(n, 1)).byteLength, n);
      for (const n of [0, 15, 1025]) assert.throws(() => type.fromBytes(Buffer.alloc(n)), InvalidKeyError);
    }
  });

  it('carry a purpose fixed at creation', () => {
    assert.equal(AeadKey.generate().purpose, 'aes-256-gcm');
    assert.equal(WrappingKey.generate().purpose, 'aes-256-kw');
    assert.equal(MacKey.generate().purpose, 'hmac-sha256');
    assert.equal(HkdfInputKey.generate().purpose, 'hkdf');
  });

  it('generate distinct keys', () => {
    const a = keyObjectOf(AeadKey.generate()).export();
    const b = keyObjectOf(AeadKey.generate()).export();
    assert.notDeepEqual(a, b);
  });

  it('copy the bytes on import, so later changes to the caller buffer do not affect the key', () => {
    const bytes = Buffer.from(secret);
    const key = AeadKey.fromBytes(bytes);
    bytes.fill(0);
    assert.deepEqual(keyObjectOf(key).export(), secret);
  });

  it('check the KeyObject handed to the constructor', () => {
    assert.throws(() => new AeadKey(createSecretKey(Buffer.alloc(16))), InvalidKeyError);
    assert.throws(() => new AeadKey(generateKeyPairSync('ed25519').privateKey), InvalidKeyError);
    assert.equal(new MacKey(createSecretKey(Buffer.alloc(20))).byteLength, 20);
  });

  it('never reveal their bytes through JSON, inspect, format or enumeration', () => {
    for (const key of [AeadKey, WrappingKey, MacKey, HkdfInputKey].map((type) => type.fromBytes(secret))) {
      assertNoLeak(JSON.stringify(key));
      assertNoLeak(JSON.stringify({ nested: [key] }));
      assertNoLeak(inspect(key, { showHidden: true, depth: Infinity, getters: true }));
      assertNoLeak(inspect({ nested: key }, { showHidden: true, depth: Infinity }));
      assertNoLeak(format('%o %O %s %j', key, key, key, key));
      assert.deepEqual(Object.keys(key), ['purpose']);
    }
    assert.deepEqual(JSON.parse(JSON.stringify(AeadKey.fromBytes(secret))), {
      kind: 'AeadKey',
      purpose: 'aes-256-gcm',
      byteLength: 32,
    });
    assert.equal(inspect(MacKey.fromBytes(secret)), "MacKey { purpose: 'hmac-sha256', byteLength: 32 }");
  });

  it('keep error messages free of key bytes', () => {
    const nearMiss = Buffer.concat([secret, Buffer.of(1)]);
    assert.throws(
      () => AeadKey.fromBytes(nearMiss),
      (e: unknown) => {
        assert.ok(e instanceof InvalidKeyError);
        assertNoLeak(e.message);
        return true;
      },
    );
  });
});

describe('purpose checks', () => {
  /* eslint-disable @typescript-eslint/no-unsafe-class-instance-assignment -- wrong keys are passed on purpose: the type error and the runtime refusal are what is tested */
  it('are type errors and runtime InvalidKeyErrors', () => {
    const takesAeadKey = (key: AeadKey): AeadKey => requireKey(key, AeadKey, 'an AeadKey');
    // @ts-expect-error a MacKey is not an AeadKey
    assert.throws(() => takesAeadKey(MacKey.generate()), InvalidKeyError);
    // @ts-expect-error a WrappingKey has the same length as an AeadKey but not the same purpose
    assert.throws(() => takesAeadKey(WrappingKey.generate()), InvalidKeyError);
    const takesPublicKey = (key: Ed25519PublicKey): Ed25519PublicKey =>
      requireKey(key, Ed25519PublicKey, 'an Ed25519PublicKey');
    // @ts-expect-error a private key is not a public key, though both are Ed25519
    assert.throws(() => takesPublicKey(Ed25519PrivateKey.generate()), InvalidKeyError);
    const forged = Object.create(AeadKey.prototype) as AeadKey;
    assert.throws(() => keyObjectOf(forged), InvalidKeyError);
    const accepted: AeadKey = requireKey(AeadKey.generate() as unknown, AeadKey, 'an AeadKey');
    assert.equal(accepted.purpose, 'aes-256-gcm');
  });
  /* eslint-enable @typescript-eslint/no-unsafe-class-instance-assignment */
});

describe('asymmetric key import', () => {
  const privateKey = Ed25519PrivateKey.generate();
  const publicKey = privateKey.publicKey();

  it('round-trips public keys through SPKI DER, PEM, JWK and raw', () => {
    const raw = publicKey.toRaw();
    for (const imported of [
      Ed25519PublicKey.fromSpkiDer(publicKey.toSpkiDer()),
      Ed25519PublicKey.fromPem(publicKey.toPem()),
      Ed25519PublicKey.fromJwk(publicKey.toJwk()),
      Ed25519PublicKey.fromRaw(raw),
    ]) {
      assert.deepEqual(imported.toRaw(), raw);
    }
  });

  it('round-trips private keys through PKCS#8 DER, PEM and JWK', () => {
    const der = privateKey.exportPkcs8Der();
    const pem = `-----BEGIN PRIVATE KEY-----\n${der.toString('base64')}\n-----END PRIVATE KEY-----\n`;
    const jwk = keyObjectOf(privateKey).export({ format: 'jwk' });
    for (const imported of [
      Ed25519PrivateKey.fromPkcs8Der(der),
      Ed25519PrivateKey.fromPem(pem),
      Ed25519PrivateKey.fromJwk(jwk),
    ]) {
      assert.deepEqual(imported.publicKey().toRaw(), publicKey.toRaw());
    }
  });

  it('refuses the wrong kind of key, the wrong PEM label, a private JWK as public, and garbage', () => {
    const pkcs8 = privateKey.exportPkcs8Der();
    const privatePem = `-----BEGIN PRIVATE KEY-----\n${pkcs8.toString('base64')}\n-----END PRIVATE KEY-----\n`;
    assert.throws(() => Ed25519PublicKey.fromPem(privatePem), InvalidKeyError);
    assert.throws(() => Ed25519PublicKey.fromPem(publicKey.toPem() + publicKey.toPem()), InvalidKeyError);
    assert.throws(
      () => Ed25519PublicKey.fromJwk(keyObjectOf(privateKey).export({ format: 'jwk' })),
      InvalidKeyError,
    );
    assert.throws(() => Ed25519PublicKey.fromSpkiDer(pkcs8), InvalidKeyError);
    assert.throws(() => Ed25519PublicKey.fromSpkiDer(Buffer.from('not a key')), InvalidKeyError);
    assert.throws(() => Ed25519PublicKey.fromRaw(Buffer.alloc(31)), InvalidKeyError);
    // An X25519 key is not an Ed25519 key, though both are 32-byte Curve25519 keys.
    const x25519 = X25519PrivateKey.generate();
    assert.throws(() => Ed25519PrivateKey.fromPkcs8Der(x25519.exportPkcs8Der()), InvalidKeyError);
    assert.throws(() => Ed25519PublicKey.fromSpkiDer(x25519.publicKey().toSpkiDer()), InvalidKeyError);
  });

  it('describe themselves without key material', () => {
    assert.deepEqual(JSON.parse(JSON.stringify(privateKey)), {
      kind: 'Ed25519PrivateKey',
      purpose: 'ed25519',
    });
    assert.equal(inspect(privateKey), "Ed25519PrivateKey { purpose: 'ed25519' }");
    const seed = keyObjectOf(privateKey).export({ format: 'raw-private' });
    assert.ok(!inspect(privateKey, { showHidden: true, depth: Infinity }).includes(seed.toString('hex')));
  });
});

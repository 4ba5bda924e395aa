import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { InvalidKeyError } from '../../src/crypto/errors.ts';
import { Ed25519PrivateKey } from '../../src/crypto/ed25519.ts';
import { hkdf } from '../../src/crypto/hkdf.ts';
import { HkdfInputKey, keyObjectOf } from '../../src/crypto/keys.ts';
import { X25519PrivateKey, X25519PublicKey, x25519SharedSecret } from '../../src/crypto/x25519.ts';
import { hex, loadWycheproof } from '../support/vectors.ts';

describe('X25519, Wycheproof x25519_test.json', () => {
  const file = loadWycheproof('x25519_test.json');

  it('computes every shared secret per RFC 7748 and refuses exactly the all-zero ones', () => {
    const computed = { valid: 0, invalid: 0, acceptable: 0 };
    const refused = { valid: 0, invalid: 0, acceptable: 0 };
    for (const group of file.testGroups) {
      for (const t of group.tests) {
        const label = `tcId ${t.tcId} ${t.comment} [${t.flags.join(',')}]`;
        assert.notEqual(t.result, 'invalid', 'the file has no invalid cases');
        const privateKey = X25519PrivateKey.fromRaw(hex(t.private));
        const publicKey = X25519PublicKey.fromRaw(hex(t.public));
        const expected = hex(t.shared);
        if (expected.every((b) => b === 0)) {
          assert.ok(t.flags.includes('ZeroSharedSecret') && t.flags.includes('LowOrderPublic'), label);
          assert.throws(() => x25519SharedSecret(privateKey, publicKey), InvalidKeyError, label);
          refused[t.result]++;
        } else {
          assert.ok(!t.flags.includes('ZeroSharedSecret'), label);
          const shared = x25519SharedSecret(privateKey, publicKey);
          assert.deepEqual(keyObjectOf(shared).export(), expected, label);
          computed[t.result]++;
        }
      }
    }
    assert.deepEqual(computed, { valid: 264, invalid: 0, acceptable: 223 });
    assert.deepEqual(refused, { valid: 0, invalid: 0, acceptable: 31 });
    assert.equal(computed.valid + computed.acceptable + refused.acceptable, file.numberOfTests);
  });
});

describe('X25519 key agreement', () => {
  it('agrees in both directions and feeds HKDF', () => {
    const alice = X25519PrivateKey.generate();
    const bob = X25519PrivateKey.generate();
    const ab = x25519SharedSecret(alice, bob.publicKey());
    const ba = x25519SharedSecret(bob, alice.publicKey());
    assert.ok(ab instanceof HkdfInputKey);
    const params = { info: Buffer.from('warden test'), length: 32 };
    assert.deepEqual(hkdf(ab, params), hkdf(ba, params));
    assert.notDeepEqual(
      hkdf(x25519SharedSecret(alice, X25519PrivateKey.generate().publicKey()), params),
      hkdf(ab, params),
    );
  });

  it('reproduces RFC 7748 §6.1', () => {
    const alice = X25519PrivateKey.fromRaw(
      Buffer.from('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a', 'hex'),
    );
    const bobPublic = X25519PublicKey.fromRaw(
      Buffer.from('de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f', 'hex'),
    );
    assert.equal(
      alice.publicKey().toRaw().toString('hex'),
      '8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a',
    );
    assert.equal(
      keyObjectOf(x25519SharedSecret(alice, bobPublic)).export().toString('hex'),
      '4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742',
    );
  });

  /* eslint-disable @typescript-eslint/no-unsafe-class-instance-assignment -- wrong keys are passed on purpose: the type error and the runtime refusal are what is tested */
  it('refuses the zero point with a typed error, and keys of other types', () => {
    const key = X25519PrivateKey.generate();
    assert.throws(() => x25519SharedSecret(key, X25519PublicKey.fromRaw(Buffer.alloc(32))), {
      name: 'InvalidKeyError',
      message: 'X25519 public key has low order: the shared secret would be all zeros',
    });
    assert.throws(() => X25519PublicKey.fromRaw(Buffer.alloc(33)), InvalidKeyError);
    const ed = Ed25519PrivateKey.generate();
    assert.throws(() => X25519PrivateKey.fromPkcs8Der(ed.exportPkcs8Der()), InvalidKeyError);
    // @ts-expect-error an Ed25519 key is not an X25519 key
    assert.throws(() => x25519SharedSecret(ed, key.publicKey()), InvalidKeyError);
    // @ts-expect-error the public key goes second
    assert.throws(() => x25519SharedSecret(key.publicKey(), key), InvalidKeyError);
  });
  /* eslint-enable @typescript-eslint/no-unsafe-class-instance-assignment */

  it('round-trips keys through PKCS#8, SPKI, PEM, JWK and raw', () => {
    const key = X25519PrivateKey.generate();
    const raw = key.publicKey().toRaw();
    assert.deepEqual(X25519PrivateKey.fromPkcs8Der(key.exportPkcs8Der()).publicKey().toRaw(), raw);
    assert.deepEqual(X25519PublicKey.fromSpkiDer(key.publicKey().toSpkiDer()).toRaw(), raw);
    assert.deepEqual(X25519PublicKey.fromPem(key.publicKey().toPem()).toRaw(), raw);
    assert.deepEqual(X25519PublicKey.fromJwk(key.publicKey().toJwk()).toRaw(), raw);
  });
});

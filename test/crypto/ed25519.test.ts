import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { JsonWebKey } from 'node:crypto';
import {
  ED25519_SIGNATURE_BYTES,
  Ed25519PrivateKey,
  Ed25519PublicKey,
  ed25519Sign,
  ed25519Verify,
} from '../../src/crypto/ed25519.ts';
import { InvalidKeyError } from '../../src/crypto/errors.ts';
import { hex, loadWycheproof } from '../support/vectors.ts';

describe('Ed25519, Wycheproof ed25519_test.json', () => {
  const file = loadWycheproof('ed25519_test.json');

  it('accepts every valid signature and rejects every invalid one', () => {
    const seen = { valid: 0, invalid: 0, acceptable: 0 };
    for (const group of file.testGroups) {
      const raw = hex((group.publicKey as { pk: string }).pk);
      const key = Ed25519PublicKey.fromRaw(raw);
      // Every import format the group offers must give the same key.
      assert.deepEqual(Ed25519PublicKey.fromSpkiDer(hex(group.publicKeyDer)).toRaw(), raw);
      assert.deepEqual(Ed25519PublicKey.fromPem(group.publicKeyPem as string).toRaw(), raw);
      assert.deepEqual(Ed25519PublicKey.fromJwk(group.publicKeyJwk as JsonWebKey).toRaw(), raw);
      for (const t of group.tests) {
        assert.equal(t.result === 'acceptable', false, 'the file has no acceptable cases');
        assert.equal(
          ed25519Verify(key, hex(t.msg), hex(t.sig)),
          t.result === 'valid',
          `tcId ${t.tcId} ${t.comment}`,
        );
        seen[t.result]++;
      }
    }
    assert.deepEqual(seen, { valid: 88, invalid: 63, acceptable: 0 });
    assert.equal(seen.valid + seen.invalid, file.numberOfTests);
  });
});

describe('Ed25519 sign / verify', () => {
  it('reproduces RFC 8032 §7.1 test 1 (signing is deterministic)', () => {
    const key = Ed25519PrivateKey.fromRaw(
      Buffer.from('9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60', 'hex'),
    );
    assert.equal(
      key.publicKey().toRaw().toString('hex'),
      'd75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a',
    );
    assert.equal(
      ed25519Sign(key, Buffer.alloc(0)).toString('hex'),
      'e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b',
    );
  });

  it('round-trips and rejects modified messages and signatures', () => {
    const key = Ed25519PrivateKey.generate();
    const message = Buffer.from('audit record 42');
    const signature = ed25519Sign(key, message);
    assert.equal(signature.byteLength, ED25519_SIGNATURE_BYTES);
    assert.equal(ed25519Verify(key.publicKey(), message, signature), true);
    assert.equal(ed25519Verify(key.publicKey(), Buffer.from('audit record 43'), signature), false);
    assert.equal(ed25519Verify(Ed25519PrivateKey.generate().publicKey(), message, signature), false);
    for (let i = 0; i < signature.byteLength; i++) {
      const bad = Buffer.from(signature);
      bad[i] = (bad[i] ?? 0) ^ 0x04;
      assert.equal(ed25519Verify(key.publicKey(), message, bad), false, `byte ${i}`);
    }
    for (const n of [0, 63, 65]) {
      assert.equal(ed25519Verify(key.publicKey(), message, Buffer.alloc(n)), false);
    }
  });

  /* eslint-disable @typescript-eslint/no-unsafe-class-instance-assignment -- wrong keys are passed on purpose: the type error and the runtime refusal are what is tested */
  it('accepts only Ed25519 keys of the right kind', () => {
    const key = Ed25519PrivateKey.generate();
    // @ts-expect-error a public key cannot sign
    assert.throws(() => ed25519Sign(key.publicKey(), Buffer.alloc(1)), InvalidKeyError);
    // @ts-expect-error a private key is not a verification key
    assert.throws(() => ed25519Verify(key, Buffer.alloc(1), Buffer.alloc(64)), InvalidKeyError);
    assert.throws(() => Ed25519PrivateKey.fromRaw(Buffer.alloc(31)), InvalidKeyError);
  });
  /* eslint-enable @typescript-eslint/no-unsafe-class-instance-assignment */
});

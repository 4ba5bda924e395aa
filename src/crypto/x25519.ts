import {
  createPublicKey,
  createSecretKey,
  diffieHellman,
  generateKeyPairSync,
  type KeyObject,
} from 'node:crypto';
import { wipe } from './bytes.ts';
import { InvalidKeyError } from './errors.ts';
import {
  AsymmetricPrivateKey,
  AsymmetricPublicKey,
  checkAsymmetric,
  HkdfInputKey,
  importRawPrivate,
  importRawPublic,
  keyObjectOf,
  requireKey,
} from './keys.ts';

/**
 * X25519 (RFC 7748). Any 32-byte string is a public key, as §5 prescribes: the top bit is ignored and
 * non-canonical values (u >= p) are reduced, points on the twist are computed like any other. What is refused
 * is a result of all zeros (§6.1), which a low-order public key forces whatever the private key: it would make
 * the "shared" secret known to anyone.
 */
export class X25519PublicKey extends AsymmetricPublicKey {
  readonly purpose = 'x25519';

  constructor(keyObject: KeyObject) {
    super(checkAsymmetric(keyObject, 'public', 'x25519', 'an X25519'));
  }

  /** The 32-byte little-endian u-coordinate. */
  static fromRaw(bytes: Uint8Array): X25519PublicKey {
    return new X25519PublicKey(importRawPublic(bytes, 'x25519'));
  }

  toRaw(): Buffer {
    return keyObjectOf(this).export({ format: 'raw-public' });
  }
}

export class X25519PrivateKey extends AsymmetricPrivateKey {
  readonly purpose = 'x25519';

  constructor(keyObject: KeyObject) {
    super(checkAsymmetric(keyObject, 'private', 'x25519', 'an X25519'));
  }

  static generate(): X25519PrivateKey {
    return new X25519PrivateKey(generateKeyPairSync('x25519').privateKey);
  }

  /** The 32-byte scalar; clamping (§5) is applied when it is used. */
  static fromRaw(scalar: Uint8Array): X25519PrivateKey {
    return new X25519PrivateKey(importRawPrivate(scalar, 'x25519'));
  }

  publicKey(): X25519PublicKey {
    return new X25519PublicKey(createPublicKey(keyObjectOf(this)));
  }
}

/**
 * X25519(private, public), returned as HKDF input keying material: the raw output is not uniformly random and
 * must go through HKDF (with both public keys in `info`) before it keys anything.
 *
 * Throws `InvalidKeyError` when the result would be all zeros (a low-order public key). OpenSSL itself refuses to
 * output the all-zero value (its X25519 derivation fails), and with two well-typed X25519 keys that is the only
 * way the derivation can fail.
 */
export function x25519SharedSecret(privateKey: X25519PrivateKey, publicKey: X25519PublicKey): HkdfInputKey {
  const priv = keyObjectOf(requireKey(privateKey, X25519PrivateKey, 'an X25519PrivateKey'));
  const pub = keyObjectOf(requireKey(publicKey, X25519PublicKey, 'an X25519PublicKey'));
  let shared: Buffer;
  try {
    shared = diffieHellman({ privateKey: priv, publicKey: pub });
  } catch {
    throw new InvalidKeyError('X25519 public key has low order: the shared secret would be all zeros');
  }
  try {
    return new HkdfInputKey(createSecretKey(shared));
  } finally {
    wipe(shared);
  }
}

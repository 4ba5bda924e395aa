import {
  AeadKey,
  EcdsaPublicKey,
  Ed25519PublicKey,
  EcdsaPrivateKey,
  Ed25519PrivateKey,
  MacKey,
  ecdsaSign,
  ecdsaVerify,
  ed25519Sign,
  ed25519Verify,
  mac,
  open,
  seal,
  verifyMac,
} from '../crypto/index.ts';
import type { EcdsaCurve } from '../crypto/index.ts';
import { InvalidRequestError, KmsDecryptionError } from './errors.ts';
import type { KeyType } from './types.ts';

/**
 * Key material of one version, in the form stored (wrapped) in the keystore: 32 raw bytes for symmetric keys,
 * PKCS#8 DER for private keys. `LoadedKey` is the unwrapped, ready-to-use form kept in the service's cache: typed
 * crypto keys whose OpenSSL key schedules are built once (re-keying costs ~3x the 256-byte operation itself).
 */
const CURVES: Readonly<Partial<Record<KeyType, EcdsaCurve>>> = {
  'ecdsa-p256': 'P-256',
  'ecdsa-p384': 'P-384',
};

export interface GeneratedMaterial {
  readonly material: Buffer;
  readonly publicKey: Buffer | null;
}

/**
 * New key material from a 32-byte seed of root entropy (the HSM's generator when one is configured): symmetric
 * keys and Ed25519 keys are the seed. The seed is consumed (wiped) here.
 */
export function generateMaterial(type: KeyType, seed: Buffer): GeneratedMaterial {
  switch (type) {
    case 'aes256-gcm':
    case 'hmac-sha256':
      return { material: seed, publicKey: null };
    case 'ed25519': {
      const key = Ed25519PrivateKey.fromRaw(seed);
      seed.fill(0);
      return { material: key.exportPkcs8Der(), publicKey: key.publicKey().toSpkiDer() };
    }
    case 'ecdsa-p256':
    case 'ecdsa-p384': {
      // EC scalars need rejection sampling mod n; OpenSSL's generator does it (seeded from the OS).
      seed.fill(0);
      const key = EcdsaPrivateKey.generate(CURVES[type] ?? 'P-256');
      return { material: key.exportPkcs8Der(), publicKey: key.publicKey().toSpkiDer() };
    }
  }
}

/** Validates imported material (BYOK) for a type and derives its public key. */
export function importMaterial(type: KeyType, material: Buffer): GeneratedMaterial {
  try {
    switch (type) {
      case 'aes256-gcm':
      case 'hmac-sha256':
        if (material.length !== 32) throw new InvalidRequestError(`${type} key material must be 32 bytes`);
        return { material, publicKey: null };
      case 'ed25519': {
        // A raw 32-byte seed or PKCS#8 DER.
        const key =
          material.length === 32
            ? Ed25519PrivateKey.fromRaw(material)
            : Ed25519PrivateKey.fromPkcs8Der(material);
        return { material: key.exportPkcs8Der(), publicKey: key.publicKey().toSpkiDer() };
      }
      case 'ecdsa-p256':
      case 'ecdsa-p384': {
        const key = EcdsaPrivateKey.fromPkcs8Der(material);
        if (key.curve !== CURVES[type])
          throw new InvalidRequestError(`imported key is not on ${CURVES[type] ?? ''}`);
        return { material: key.exportPkcs8Der(), publicKey: key.publicKey().toSpkiDer() };
      }
    }
  } catch (err) {
    if (err instanceof InvalidRequestError) throw err;
    throw new InvalidRequestError(`imported material is not a valid ${type} key`);
  }
}

export type LoadedKey =
  | { readonly type: 'aes256-gcm'; readonly key: AeadKey }
  | { readonly type: 'hmac-sha256'; readonly key: MacKey }
  | { readonly type: 'ed25519'; readonly key: Ed25519PrivateKey; readonly publicKey: Ed25519PublicKey }
  | {
      readonly type: 'ecdsa-p256' | 'ecdsa-p384';
      readonly key: EcdsaPrivateKey;
      readonly publicKey: EcdsaPublicKey;
    };

export function loadMaterial(type: KeyType, material: Buffer): LoadedKey {
  switch (type) {
    case 'aes256-gcm':
      return { type, key: AeadKey.fromBytes(material) };
    case 'hmac-sha256':
      return { type, key: MacKey.fromBytes(material) };
    case 'ed25519': {
      const key = Ed25519PrivateKey.fromPkcs8Der(material);
      return { type, key, publicKey: key.publicKey() };
    }
    case 'ecdsa-p256':
    case 'ecdsa-p384': {
      const key = EcdsaPrivateKey.fromPkcs8Der(material);
      return { type, key, publicKey: key.publicKey() };
    }
  }
}

export function encryptWith(loaded: LoadedKey, plaintext: Uint8Array, aad: Uint8Array): Buffer {
  if (loaded.type !== 'aes256-gcm') throw new InvalidRequestError('not an encryption key');
  return seal(loaded.key, plaintext, aad);
}

export function decryptWith(loaded: LoadedKey, sealed: Uint8Array, aad: Uint8Array): Buffer {
  if (loaded.type !== 'aes256-gcm') throw new KmsDecryptionError();
  try {
    return open(loaded.key, sealed, aad);
  } catch {
    throw new KmsDecryptionError();
  }
}

export function macWith(loaded: LoadedKey, data: Uint8Array): Buffer {
  if (loaded.type !== 'hmac-sha256') throw new InvalidRequestError('not an HMAC key');
  return mac(loaded.key, data);
}

export function verifyMacWith(loaded: LoadedKey, data: Uint8Array, tag: Uint8Array): boolean {
  return loaded.type === 'hmac-sha256' && verifyMac(loaded.key, data, tag);
}

/** Ed25519 signs the message itself; ECDSA hashes with SHA-256 (P-256) or SHA-384 (P-384) and returns DER. */
export function signWith(loaded: LoadedKey, message: Uint8Array): Buffer {
  if (loaded.type === 'ed25519') return ed25519Sign(loaded.key, message);
  if (loaded.type === 'ecdsa-p256' || loaded.type === 'ecdsa-p384')
    return ecdsaSign(loaded.key, message, 'der');
  throw new InvalidRequestError('not a signing key');
}

export function verifyWith(loaded: LoadedKey, message: Uint8Array, signature: Uint8Array): boolean {
  if (loaded.type === 'ed25519') return ed25519Verify(loaded.publicKey, message, signature);
  if (loaded.type === 'ecdsa-p256' || loaded.type === 'ecdsa-p384')
    return ecdsaVerify(loaded.publicKey, message, signature, 'der');
  return false;
}

/** SPKI PEM of a signing key version's public key. */
export function publicKeyPem(type: KeyType, spki: Buffer): string {
  if (type === 'ed25519') return Ed25519PublicKey.fromSpkiDer(spki).toPem();
  return EcdsaPublicKey.fromSpkiDer(spki).toPem();
}

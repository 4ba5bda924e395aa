import {
  createPrivateKey,
  createPublicKey,
  createSecretKey,
  type JsonWebKey,
  type KeyObject,
} from 'node:crypto';
import { inspect } from 'node:util';
import { wipe } from './bytes.ts';
import { InvalidKeyError } from './errors.ts';
import { randomBytes } from './random.ts';

/**
 * Keys typed by purpose. Every key is an opaque object whose `purpose` is fixed when it is created, so a key made
 * for one primitive is a type error (distinct literal `purpose` fields) and a runtime `InvalidKeyError` (class
 * check) anywhere else. The key material lives in a node:crypto `KeyObject` held in a private field: it never
 * appears in `JSON.stringify`, `util.inspect` or enumeration.
 *
 * Constructors take a KeyObject and check its type, algorithm and size, so existing KeyObjects can be adopted;
 * the static `generate`/`from*` factories are the usual way in.
 *
 * Secret keys have no byte export: they leave the process only wrapped (`wrapKey` in keywrap.ts). Private keys
 * export PKCS#8 DER through a method whose name says so, because they must be storable somewhere.
 */

let keyObjectOfKey: (key: WardenKey) => KeyObject;

export abstract class WardenKey {
  readonly #keyObject: KeyObject;

  constructor(keyObject: KeyObject) {
    this.#keyObject = keyObject;
  }

  static {
    keyObjectOfKey = (key) => {
      // instanceof can be fooled with Object.create(AeadKey.prototype); the private field cannot.
      if (!(#keyObject in key)) throw new InvalidKeyError('not a key object created by src/crypto');
      return key.#keyObject;
    };
  }

  abstract readonly purpose: string;

  /** Non-secret facts about the key, for logs and debugging. */
  protected describe(): Record<string, string | number> {
    return { purpose: this.purpose };
  }

  toJSON(): Record<string, string | number> {
    return { kind: this.constructor.name, ...this.describe() };
  }

  [inspect.custom](): string {
    return `${this.constructor.name} ${inspect(this.describe())}`;
  }
}

/**
 * The KeyObject inside a key. Internal to src/crypto: the package's export map exposes only index.ts, which does
 * not re-export this.
 */
export function keyObjectOf(key: WardenKey): KeyObject {
  return keyObjectOfKey(key);
}

/** Runtime half of the purpose typing, for callers that bypass the type checker (plain JS, `as` casts). */
export function requireKey<K extends WardenKey>(
  key: unknown,
  type: abstract new (...args: never) => K,
  expected: string,
): K {
  if (!(key instanceof type)) throw new InvalidKeyError(`expected ${expected}`);
  return key;
}

function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

export type SecretKeyPurpose = 'aes-256-gcm' | 'aes-256-kw' | 'hmac-sha256' | 'hkdf';

export abstract class SecretKey extends WardenKey {
  abstract override readonly purpose: SecretKeyPurpose;

  get byteLength(): number {
    return keyObjectOf(this).symmetricKeySize ?? 0;
  }

  protected override describe(): Record<string, string | number> {
    return { purpose: this.purpose, byteLength: this.byteLength };
  }
}

/** What `hkdfDeriveKey` and `unwrapKey` need to produce a key of a given class. */
export interface SecretKeyType<K extends SecretKey> {
  /** Length used by `generate()` and by derivation. */
  readonly defaultByteLength: number;
  fromBytes(bytes: Uint8Array): K;
}

function checkSecret(keyObject: KeyObject, min: number, max: number, what: string): KeyObject {
  if (keyObject.type !== 'secret') throw new InvalidKeyError(`${what} must be a secret key`);
  const size = keyObject.symmetricKeySize ?? 0;
  if (size < min || size > max) {
    throw new InvalidKeyError(
      min === max ? `${what} must be ${min} bytes` : `${what} must be ${min} to ${max} bytes`,
    );
  }
  return keyObject;
}

/** Copies the bytes into a KeyObject. The caller keeps ownership of `bytes` (and may wipe them). */
function secretFromBytes(bytes: Uint8Array): KeyObject {
  return createSecretKey(asBuffer(bytes));
}

function generateSecret(length: number): KeyObject {
  const bytes = randomBytes(length);
  try {
    return createSecretKey(bytes);
  } finally {
    wipe(bytes);
  }
}

/** AES-256-GCM key (32 bytes), for `seal`/`open`. */
export class AeadKey extends SecretKey {
  readonly purpose = 'aes-256-gcm';
  static readonly defaultByteLength = 32;

  constructor(keyObject: KeyObject) {
    super(checkSecret(keyObject, 32, 32, 'an AES-256-GCM key'));
  }

  static generate(): AeadKey {
    return new AeadKey(generateSecret(32));
  }

  static fromBytes(bytes: Uint8Array): AeadKey {
    return new AeadKey(secretFromBytes(bytes));
  }
}

/** AES-256 key-encryption key (32 bytes), for RFC 3394 / RFC 5649 key wrap. */
export class WrappingKey extends SecretKey {
  readonly purpose = 'aes-256-kw';
  static readonly defaultByteLength = 32;

  constructor(keyObject: KeyObject) {
    super(checkSecret(keyObject, 32, 32, 'an AES-256 key-wrapping key'));
  }

  static generate(): WrappingKey {
    return new WrappingKey(generateSecret(32));
  }

  static fromBytes(bytes: Uint8Array): WrappingKey {
    return new WrappingKey(secretFromBytes(bytes));
  }
}

/**
 * HMAC-SHA256 key. 32 bytes are generated; 16 to 1024 bytes are accepted on import. RFC 2104 allows any length,
 * but keys shorter than 16 bytes fall below the 128-bit security floor, and keys longer than the 64-byte block
 * are hashed first, so very long ones buy nothing.
 */
export class MacKey extends SecretKey {
  readonly purpose = 'hmac-sha256';
  static readonly defaultByteLength = 32;
  static readonly minByteLength = 16;
  static readonly maxByteLength = 1024;

  constructor(keyObject: KeyObject) {
    super(checkSecret(keyObject, MacKey.minByteLength, MacKey.maxByteLength, 'an HMAC-SHA256 key'));
  }

  static generate(): MacKey {
    return new MacKey(generateSecret(MacKey.defaultByteLength));
  }

  static fromBytes(bytes: Uint8Array): MacKey {
    return new MacKey(secretFromBytes(bytes));
  }
}

/**
 * Input keying material for HKDF (a shared secret, a master key, or an HKDF-Extract PRK), 16 to 1024 bytes. It
 * can only feed HKDF: a Diffie-Hellman output is not uniformly random and must not be used as a key directly.
 */
export class HkdfInputKey extends SecretKey {
  readonly purpose = 'hkdf';
  static readonly defaultByteLength = 32;
  static readonly minByteLength = 16;
  static readonly maxByteLength = 1024;

  constructor(keyObject: KeyObject) {
    super(
      checkSecret(
        keyObject,
        HkdfInputKey.minByteLength,
        HkdfInputKey.maxByteLength,
        'HKDF input keying material',
      ),
    );
  }

  static generate(): HkdfInputKey {
    return new HkdfInputKey(generateSecret(HkdfInputKey.defaultByteLength));
  }

  static fromBytes(bytes: Uint8Array): HkdfInputKey {
    return new HkdfInputKey(secretFromBytes(bytes));
  }
}

// Asymmetric keys: the shared import/export machinery. Each algorithm module defines its public/private classes
// on top, whose constructors check the KeyObject's type, algorithm and size.

export type AsymmetricKeyPurpose = 'ed25519' | 'ecdsa' | 'rsa-oaep-sha256' | 'x25519';

/** Runs a node:crypto import and turns its failure into an InvalidKeyError that carries no input bytes. */
function importing(what: string, load: () => KeyObject): KeyObject {
  try {
    return load();
  } catch {
    throw new InvalidKeyError(`could not import ${what}`);
  }
}

/**
 * Accepts exactly one PEM block with the given label. createPublicKey would otherwise also take a private key or
 * an X.509 certificate and quietly derive the public key from it, hiding a mix-up in the caller.
 */
function checkPemLabel(pem: string, label: string): string {
  const blocks = pem.match(/-----BEGIN [A-Z0-9 ]+-----/g) ?? [];
  if (blocks.length !== 1 || blocks[0] !== `-----BEGIN ${label}-----`) {
    throw new InvalidKeyError(`expected a single PEM block labelled ${label}`);
  }
  return pem;
}

export function checkAsymmetric(
  keyObject: KeyObject,
  type: 'public' | 'private',
  asymmetricKeyType: string,
  what: string,
): KeyObject {
  if (keyObject.type !== type || keyObject.asymmetricKeyType !== asymmetricKeyType) {
    throw new InvalidKeyError(`expected ${what} ${type} key`);
  }
  return keyObject;
}

export function importRawPublic(
  bytes: Uint8Array,
  asymmetricKeyType: 'ed25519' | 'x25519' | 'ec',
  namedCurve?: string,
): KeyObject {
  return importing('raw public key', () =>
    createPublicKey({ key: asBuffer(bytes), format: 'raw-public', asymmetricKeyType, namedCurve }),
  );
}

export function importRawPrivate(bytes: Uint8Array, asymmetricKeyType: 'ed25519' | 'x25519'): KeyObject {
  return importing('raw private key', () =>
    createPrivateKey({ key: asBuffer(bytes), format: 'raw-private', asymmetricKeyType }),
  );
}

export abstract class AsymmetricPublicKey extends WardenKey {
  abstract override readonly purpose: AsymmetricKeyPurpose;
  readonly type = 'public';

  static fromSpkiDer<T>(this: new (keyObject: KeyObject) => T, der: Uint8Array): T {
    return new this(
      importing('SPKI public key', () =>
        createPublicKey({ key: asBuffer(der), format: 'der', type: 'spki' }),
      ),
    );
  }

  static fromPem<T>(this: new (keyObject: KeyObject) => T, pem: string): T {
    const checked = checkPemLabel(pem, 'PUBLIC KEY');
    return new this(importing('PEM public key', () => createPublicKey({ key: checked, format: 'pem' })));
  }

  static fromJwk<T>(this: new (keyObject: KeyObject) => T, jwk: JsonWebKey): T {
    if ('d' in jwk) throw new InvalidKeyError('expected a public JWK, got a private one');
    return new this(importing('JWK public key', () => createPublicKey({ key: jwk, format: 'jwk' })));
  }

  toSpkiDer(): Buffer {
    return keyObjectOf(this).export({ format: 'der', type: 'spki' });
  }

  toPem(): string {
    return keyObjectOf(this).export({ format: 'pem', type: 'spki' }) as string;
  }

  toJwk(): JsonWebKey {
    return keyObjectOf(this).export({ format: 'jwk' });
  }
}

export abstract class AsymmetricPrivateKey extends WardenKey {
  abstract override readonly purpose: AsymmetricKeyPurpose;
  readonly type = 'private';

  /** Unencrypted PKCS#8 only: legacy PKCS#1/SEC1 PEM and passphrase-protected keys are refused. */
  static fromPkcs8Der<T>(this: new (keyObject: KeyObject) => T, der: Uint8Array): T {
    return new this(
      importing('PKCS#8 private key', () =>
        createPrivateKey({ key: asBuffer(der), format: 'der', type: 'pkcs8' }),
      ),
    );
  }

  static fromPem<T>(this: new (keyObject: KeyObject) => T, pem: string): T {
    const checked = checkPemLabel(pem, 'PRIVATE KEY');
    return new this(importing('PEM private key', () => createPrivateKey({ key: checked, format: 'pem' })));
  }

  static fromJwk<T>(this: new (keyObject: KeyObject) => T, jwk: JsonWebKey): T {
    return new this(importing('JWK private key', () => createPrivateKey({ key: jwk, format: 'jwk' })));
  }

  abstract publicKey(): AsymmetricPublicKey;

  /** The private key as unencrypted PKCS#8 DER. This is secret material: seal or wrap it before storing it. */
  exportPkcs8Der(): Buffer {
    return keyObjectOf(this).export({ format: 'der', type: 'pkcs8' });
  }
}

import {
  constants,
  createPublicKey,
  generateKeyPair,
  privateDecrypt,
  publicEncrypt,
  type KeyObject,
} from 'node:crypto';
import { promisify } from 'node:util';
import { DecryptionError, InvalidInputError, InvalidKeyError } from './errors.ts';
import {
  AsymmetricPrivateKey,
  AsymmetricPublicKey,
  checkAsymmetric,
  keyObjectOf,
  requireKey,
} from './keys.ts';

/**
 * RSAES-OAEP (RFC 8017 §7.1) with SHA-256 and MGF1-SHA-256, for 3072- and 4096-bit moduli with e = 65537. The
 * key type is the scheme: an `RsaOaep*Key` cannot sign, and no other padding is reachable. Node sets the MGF1 hash
 * to the OAEP hash when only `oaepHash` is given, which the Wycheproof MGF1-SHA256 vectors confirm.
 */
export type RsaModulusBits = 3072 | 4096;

const HASH_BYTES = 32;
const PUBLIC_EXPONENT = 65537n;

function checkModulusBits(bits: number | undefined): RsaModulusBits {
  if (bits === 3072 || bits === 4096) return bits;
  throw new InvalidKeyError('RSA-OAEP key must be 3072 or 4096 bits');
}

function checkRsa(keyObject: KeyObject, type: 'public' | 'private'): RsaModulusBits {
  checkAsymmetric(keyObject, type, 'rsa', 'an RSA');
  const details = keyObject.asymmetricKeyDetails;
  const bits = checkModulusBits(details?.modulusLength);
  if (details?.publicExponent !== PUBLIC_EXPONENT)
    throw new InvalidKeyError('RSA public exponent must be 65537');
  return bits;
}

function maxPlaintextBytes(modulusBits: RsaModulusBits): number {
  return modulusBits / 8 - 2 * HASH_BYTES - 2;
}

export class RsaOaepPublicKey extends AsymmetricPublicKey {
  readonly purpose = 'rsa-oaep-sha256';
  readonly modulusBits: RsaModulusBits;

  constructor(keyObject: KeyObject) {
    const bits = checkRsa(keyObject, 'public');
    super(keyObject);
    this.modulusBits = bits;
  }

  /** Longest plaintext one encryption takes: k - 2 hLen - 2 bytes (318 for 3072 bits, 446 for 4096). */
  get maxPlaintextBytes(): number {
    return maxPlaintextBytes(this.modulusBits);
  }

  protected override describe(): Record<string, string | number> {
    return { purpose: this.purpose, modulusBits: this.modulusBits };
  }
}

const generateRsa = promisify(generateKeyPair);

export class RsaOaepPrivateKey extends AsymmetricPrivateKey {
  readonly purpose = 'rsa-oaep-sha256';
  readonly modulusBits: RsaModulusBits;

  constructor(keyObject: KeyObject) {
    const bits = checkRsa(keyObject, 'private');
    super(keyObject);
    this.modulusBits = bits;
  }

  /** Asynchronous because RSA key generation takes seconds and would stall the event loop. */
  static async generate(modulusBits: RsaModulusBits): Promise<RsaOaepPrivateKey> {
    const { privateKey } = await generateRsa('rsa', {
      modulusLength: checkModulusBits(modulusBits),
      publicExponent: Number(PUBLIC_EXPONENT),
    });
    return new RsaOaepPrivateKey(privateKey);
  }

  publicKey(): RsaOaepPublicKey {
    return new RsaOaepPublicKey(createPublicKey(keyObjectOf(this)));
  }

  protected override describe(): Record<string, string | number> {
    return { purpose: this.purpose, modulusBits: this.modulusBits };
  }
}

export function rsaOaepEncrypt(key: RsaOaepPublicKey, plaintext: Uint8Array, label?: Uint8Array): Buffer {
  const checked = requireKey(key, RsaOaepPublicKey, 'an RsaOaepPublicKey');
  if (plaintext.byteLength > checked.maxPlaintextBytes) {
    throw new InvalidInputError(`RSA-OAEP plaintext must be at most ${checked.maxPlaintextBytes} bytes`);
  }
  return publicEncrypt(
    {
      key: keyObjectOf(checked),
      padding: constants.RSA_PKCS1_OAEP_PADDING,
      oaepHash: 'sha256',
      oaepLabel: label,
    },
    plaintext,
  );
}

/**
 * Every failure (wrong length, ciphertext >= n, bad padding, wrong label, wrong key) is the same
 * `DecryptionError`. OpenSSL checks OAEP padding in constant time and reports one error for all padding faults;
 * collapsing every failure into one error here keeps it that way, so there is no Manger-style oracle.
 */
export function rsaOaepDecrypt(key: RsaOaepPrivateKey, ciphertext: Uint8Array, label?: Uint8Array): Buffer {
  const checked = requireKey(key, RsaOaepPrivateKey, 'an RsaOaepPrivateKey');
  if (ciphertext.byteLength !== checked.modulusBits / 8) throw new DecryptionError();
  try {
    return privateDecrypt(
      {
        key: keyObjectOf(checked),
        padding: constants.RSA_PKCS1_OAEP_PADDING,
        oaepHash: 'sha256',
        oaepLabel: label,
      },
      ciphertext,
    );
  } catch {
    throw new DecryptionError();
  }
}

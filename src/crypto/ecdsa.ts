import { createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto';
import { InvalidInputError, InvalidKeyError } from './errors.ts';
import {
  AsymmetricPrivateKey,
  AsymmetricPublicKey,
  checkAsymmetric,
  importRawPublic,
  keyObjectOf,
  requireKey,
} from './keys.ts';

/**
 * ECDSA over P-256 with SHA-256 and P-384 with SHA-384: the hash is fixed by the curve, never chosen per call.
 * Signatures come in two encodings: DER (X9.62 `SEQUENCE { r INTEGER, s INTEGER }`, what X.509 and most
 * protocols use) and IEEE P1363 (fixed-width r || s, what JOSE/WebCrypto and HSMs use). OpenSSL draws the nonce k
 * from its CSPRNG, hedged with the private key and the digest.
 */
export type EcdsaCurve = 'P-256' | 'P-384';
export type EcdsaSignatureEncoding = 'der' | 'ieee-p1363';

interface CurveParams {
  readonly openSslName: string;
  readonly hash: 'sha256' | 'sha384';
  /** Byte length of the group order n, hence of r and s in P1363 form. */
  readonly scalarBytes: number;
  readonly order: bigint;
}

const CURVES: Readonly<Record<EcdsaCurve, CurveParams>> = {
  'P-256': {
    openSslName: 'prime256v1',
    hash: 'sha256',
    scalarBytes: 32,
    order: 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n,
  },
  'P-384': {
    openSslName: 'secp384r1',
    hash: 'sha384',
    scalarBytes: 48,
    order:
      0xffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973n,
  },
};

function curveParams(curve: EcdsaCurve): CurveParams {
  const params = CURVES[curve] as CurveParams | undefined;
  if (params === undefined) throw new InvalidKeyError('ECDSA curve must be P-256 or P-384');
  return params;
}

function curveOf(keyObject: KeyObject): EcdsaCurve {
  const name = keyObject.asymmetricKeyDetails?.namedCurve;
  if (name === CURVES['P-256'].openSslName) return 'P-256';
  if (name === CURVES['P-384'].openSslName) return 'P-384';
  throw new InvalidKeyError('ECDSA key must be on P-256 or P-384');
}

export class EcdsaPublicKey extends AsymmetricPublicKey {
  readonly purpose = 'ecdsa';
  readonly curve: EcdsaCurve;

  constructor(keyObject: KeyObject) {
    super(checkAsymmetric(keyObject, 'public', 'ec', 'an EC'));
    this.curve = curveOf(keyObject);
  }

  /** An uncompressed SEC1 point, 0x04 || X || Y. OpenSSL checks that it lies on the curve. */
  static fromRaw(point: Uint8Array, curve: EcdsaCurve): EcdsaPublicKey {
    const params = curveParams(curve);
    if (point.byteLength !== 1 + 2 * params.scalarBytes || point[0] !== 0x04) {
      throw new InvalidKeyError(`expected an uncompressed ${curve} point`);
    }
    return new EcdsaPublicKey(importRawPublic(point, 'ec', params.openSslName));
  }

  /** The uncompressed SEC1 point. */
  toRaw(): Buffer {
    return keyObjectOf(this).export({ format: 'raw-public' });
  }

  protected override describe(): Record<string, string | number> {
    return { purpose: this.purpose, curve: this.curve };
  }
}

export class EcdsaPrivateKey extends AsymmetricPrivateKey {
  readonly purpose = 'ecdsa';
  readonly curve: EcdsaCurve;

  constructor(keyObject: KeyObject) {
    super(checkAsymmetric(keyObject, 'private', 'ec', 'an EC'));
    this.curve = curveOf(keyObject);
  }

  static generate(curve: EcdsaCurve): EcdsaPrivateKey {
    const { openSslName } = curveParams(curve);
    return new EcdsaPrivateKey(generateKeyPairSync('ec', { namedCurve: openSslName }).privateKey);
  }

  publicKey(): EcdsaPublicKey {
    return new EcdsaPublicKey(createPublicKey(keyObjectOf(this)));
  }

  protected override describe(): Record<string, string | number> {
    return { purpose: this.purpose, curve: this.curve };
  }
}

export function ecdsaSign(
  key: EcdsaPrivateKey,
  message: Uint8Array,
  encoding: EcdsaSignatureEncoding = 'der',
): Buffer {
  const checked = requireKey(key, EcdsaPrivateKey, 'an EcdsaPrivateKey');
  return sign(curveParams(checked.curve).hash, message, {
    key: keyObjectOf(checked),
    dsaEncoding: checkEncoding(encoding),
  });
}

/**
 * True only for a valid signature in the stated encoding. OpenSSL parses DER strictly (it re-encodes the parsed
 * signature and compares), so BER variants, padding and trailing bytes are invalid; the Wycheproof test holds it
 * to that.
 */
export function ecdsaVerify(
  key: EcdsaPublicKey,
  message: Uint8Array,
  signature: Uint8Array,
  encoding: EcdsaSignatureEncoding = 'der',
): boolean {
  const checked = requireKey(key, EcdsaPublicKey, 'an EcdsaPublicKey');
  const params = curveParams(checked.curve);
  if (checkEncoding(encoding) === 'ieee-p1363' && signature.byteLength !== 2 * params.scalarBytes)
    return false;
  return verify(params.hash, message, { key: keyObjectOf(checked), dsaEncoding: encoding }, signature);
}

function checkEncoding(encoding: string): EcdsaSignatureEncoding {
  if (encoding === 'der' || encoding === 'ieee-p1363') return encoding;
  throw new InvalidInputError('ECDSA signature encoding must be der or ieee-p1363');
}

// DER <-> IEEE P1363 conversion, e.g. for HSMs that return raw r || s where X.509 needs DER.

const SEQUENCE = 0x30;
const INTEGER = 0x02;

function malformed(): InvalidInputError {
  return new InvalidInputError('malformed ECDSA signature');
}

function checkScalar(value: bigint, params: CurveParams): void {
  if (value < 1n || value >= params.order) throw malformed();
}

/** Reads one DER INTEGER at `offset`: minimal, positive, in [1, n). Returns the value and the next offset. */
function readInteger(der: Uint8Array, offset: number, params: CurveParams): [bigint, number] {
  const length = der[offset + 1];
  if (der[offset] !== INTEGER || length === undefined || length === 0 || length >= 0x80) throw malformed();
  const start = offset + 2;
  const end = start + length;
  if (end > der.byteLength) throw malformed();
  const first = der[start] ?? 0;
  // A set top bit means a negative number; a leading zero is allowed only in front of a set top bit.
  if (first & 0x80) throw malformed();
  if (first === 0 && length > 1 && ((der[start + 1] ?? 0) & 0x80) === 0) throw malformed();
  const value = BigInt(`0x${Buffer.from(der.subarray(start, end)).toString('hex')}`);
  checkScalar(value, params);
  return [value, end];
}

function scalarBytes(value: bigint, width: number): Buffer {
  return Buffer.from(value.toString(16).padStart(width * 2, '0'), 'hex');
}

function encodeInteger(value: bigint): Buffer {
  let hex = value.toString(16);
  if (hex.length % 2 === 1) hex = `0${hex}`;
  if (parseInt(hex.slice(0, 2), 16) & 0x80) hex = `00${hex}`;
  const body = Buffer.from(hex, 'hex');
  return Buffer.concat([Uint8Array.of(INTEGER, body.byteLength), body]);
}

/**
 * Strict DER to P1363: exactly one SEQUENCE of two minimal, positive INTEGERs in [1, n), short-form lengths
 * (P-256 and P-384 signatures never need the long form, and DER forbids it below 128), nothing after it.
 */
export function ecdsaDerToP1363(der: Uint8Array, curve: EcdsaCurve): Buffer {
  const params = curveParams(curve);
  if (
    der.byteLength < 2 ||
    der[0] !== SEQUENCE ||
    der[1] !== der.byteLength - 2 ||
    der.byteLength - 2 >= 0x80
  ) {
    throw malformed();
  }
  const [r, afterR] = readInteger(der, 2, params);
  const [s, afterS] = readInteger(der, afterR, params);
  if (afterS !== der.byteLength) throw malformed();
  return Buffer.concat([scalarBytes(r, params.scalarBytes), scalarBytes(s, params.scalarBytes)]);
}

/** P1363 (r || s, each exactly the order's width, both in [1, n)) to DER. */
export function ecdsaP1363ToDer(signature: Uint8Array, curve: EcdsaCurve): Buffer {
  const params = curveParams(curve);
  if (signature.byteLength !== 2 * params.scalarBytes) throw malformed();
  const half = params.scalarBytes;
  const [r, s] = [signature.subarray(0, half), signature.subarray(half)].map((part) =>
    BigInt(`0x${Buffer.from(part).toString('hex')}`),
  ) as [bigint, bigint];
  checkScalar(r, params);
  checkScalar(s, params);
  const body = Buffer.concat([encodeInteger(r), encodeInteger(s)]);
  return Buffer.concat([Uint8Array.of(SEQUENCE, body.byteLength), body]);
}

import { EcdsaPublicKey, type EcdsaCurve } from '../../../crypto/index.ts';
import { HsmError } from './errors.ts';

/** DER-encoded named-curve OIDs, the value of `CKA_EC_PARAMS` for the curves Warden uses. */
const EC_PARAMS: Readonly<Record<EcdsaCurve, Buffer>> = {
  'P-256': Buffer.from('06082a8648ce3d030107', 'hex'), // 1.2.840.10045.3.1.7 prime256v1
  'P-384': Buffer.from('06052b81040022', 'hex'), // 1.3.132.0.34 secp384r1
};

const SCALAR_BYTES: Readonly<Record<EcdsaCurve, number>> = { 'P-256': 32, 'P-384': 48 };

export const CURVE_HASH: Readonly<Record<EcdsaCurve, 'sha256' | 'sha384'>> = {
  'P-256': 'sha256',
  'P-384': 'sha384',
};

export function ecParamsOf(curve: EcdsaCurve): Buffer {
  return Buffer.from(EC_PARAMS[curve]);
}

export function curveOfEcParams(params: Uint8Array): EcdsaCurve | undefined {
  for (const curve of ['P-256', 'P-384'] as const) {
    if (Buffer.from(params).equals(EC_PARAMS[curve])) return curve;
  }
  return undefined;
}

/** Length of a raw (IEEE P1363) signature r || s. */
export function signatureBytes(curve: EcdsaCurve): number {
  return 2 * SCALAR_BYTES[curve];
}

/**
 * `CKA_EC_POINT` is specified as the DER OCTET STRING wrapping the uncompressed point (what SoftHSM returns);
 * some modules return the bare point. Both are accepted; the two cannot be confused because their lengths differ.
 */
export function ecPointOf(attribute: Uint8Array, curve: EcdsaCurve): Buffer {
  const pointBytes = 1 + 2 * SCALAR_BYTES[curve];
  const value = Buffer.from(attribute);
  if (value.byteLength === pointBytes) return value;
  if (value.byteLength === pointBytes + 2 && value[0] === 0x04 && value[1] === pointBytes) {
    return value.subarray(2);
  }
  throw new HsmError('hsm_error', `CKA_EC_POINT is not an uncompressed ${curve} point`);
}

/** SubjectPublicKeyInfo DER of a point; node:crypto checks that the point lies on the curve. */
export function spkiOf(point: Uint8Array, curve: EcdsaCurve): Buffer {
  return EcdsaPublicKey.fromRaw(point, curve).toSpkiDer();
}

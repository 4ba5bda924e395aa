import { createHash, createPublicKey, sign as nodeSign, X509Certificate, type KeyObject } from 'node:crypto';
import { CertificateError, KeyMismatchError, UnsupportedError } from './errors.ts';

/**
 * The signing abstraction. A Signer holds (or fronts) an ECDSA private key and signs DSSE pre-authentication
 * encodings; the private key never has to leave it, so a KMS or HSM implements the same interface.
 */

/** ECDSA with the hash that matches the curve, as Sigstore's key details pair them. */
export type SigningAlgorithm = 'ecdsa-p256-sha256' | 'ecdsa-p384-sha384';

interface SignerBase {
  readonly algorithm: SigningAlgorithm;
  /**
   * Signs `data` (the DSSE PAE bytes, not a digest) with the algorithm's hash and returns an ASN.1 DER ECDSA
   * signature. A KMS that signs digests hashes `data` itself with `hashFor(algorithm)`.
   */
  sign(data: Uint8Array): Promise<Uint8Array>;
}

/** Key method: the bundle identifies the key by `publicKey.hint`; verifiers must already hold the key. */
export interface KeySigner extends SignerBase {
  /** SPKI PEM of the signing key. */
  readonly publicKeyPem: string;
}

/** Certificate method: the bundle carries the chain; verifiers hold a trust anchor. */
export interface CertificateSigner extends SignerBase {
  /** DER certificates, the signing (leaf) certificate first, then its CA chain (§4.1). */
  readonly certificateChain: readonly Uint8Array[];
}

export type Signer = KeySigner | CertificateSigner;

const CURVES: Readonly<Record<string, SigningAlgorithm>> = {
  prime256v1: 'ecdsa-p256-sha256',
  secp384r1: 'ecdsa-p384-sha384',
};

/** Sigstore `PublicKeyDetails` names of the supported algorithms (found in pre-v1.1.0 `keyDetails`). */
export const KEY_DETAILS: Readonly<Record<SigningAlgorithm, string>> = {
  'ecdsa-p256-sha256': 'PKIX_ECDSA_P256_SHA_256',
  'ecdsa-p384-sha384': 'PKIX_ECDSA_P384_SHA_384',
};

export function hashFor(algorithm: SigningAlgorithm): 'sha256' | 'sha384' {
  return algorithm === 'ecdsa-p256-sha256' ? 'sha256' : 'sha384';
}

/** The algorithm of an EC P-256 or P-384 key (public or private); anything else is unsupported. */
export function algorithmOf(key: KeyObject): SigningAlgorithm {
  const curve = key.asymmetricKeyType === 'ec' ? key.asymmetricKeyDetails?.namedCurve : undefined;
  const algorithm = curve === undefined ? undefined : CURVES[curve];
  if (algorithm === undefined) {
    throw new UnsupportedError(
      `only ECDSA P-256 and P-384 keys are supported, got ${key.asymmetricKeyType ?? 'unknown'} ${curve ?? ''}`.trim(),
    );
  }
  return algorithm;
}

export function spkiPem(key: KeyObject): string {
  return key.export({ type: 'spki', format: 'pem' }).toString();
}

/**
 * The `publicKey.hint` written into key-method bundles: hex SHA-256 of the key's SPKI PEM text, as the reference
 * implementation computes it (and the shared test vectors carry). The PEM is re-exported here, so a KMS's own PEM
 * layout (line length, CRLF, missing final newline) does not change the hint.
 */
export function publicKeyHint(key: KeyObject): string {
  return createHash('sha256').update(spkiPem(key)).digest('hex');
}

/** Hex SHA-256 of the DER SPKI: the other common meaning of "key fingerprint", accepted as a hint by the verifier. */
export function publicKeyDerFingerprint(key: KeyObject): string {
  return createHash('sha256')
    .update(key.export({ type: 'spki', format: 'der' }))
    .digest('hex');
}

function certificateDer(cert: Uint8Array | string, index: number): Uint8Array {
  try {
    return new X509Certificate(typeof cert === 'string' ? cert : Buffer.from(cert)).raw;
  } catch (err) {
    throw new CertificateError(`certificate #${index} of the signing chain cannot be parsed`, { cause: err });
  }
}

/**
 * A Signer over a local private key, for development, tests and CI keys. With `certificateChain` it signs by the
 * certificate method; the leaf must certify this key.
 */
export function localKeySigner(
  privateKey: KeyObject,
  options: { certificateChain?: readonly (Uint8Array | string)[] } = {},
): Signer {
  if (privateKey.type !== 'private') throw new KeyMismatchError('localKeySigner needs a private key');
  const algorithm = algorithmOf(privateKey);
  const publicKey = createPublicKey(privateKey);
  const sign = (data: Uint8Array): Promise<Uint8Array> =>
    new Promise((resolve, reject) => {
      nodeSign(hashFor(algorithm), data, { key: privateKey, dsaEncoding: 'der' }, (err, signature) => {
        if (err === null) resolve(signature);
        else reject(err);
      });
    });
  const chain = options.certificateChain;
  if (chain === undefined) return { algorithm, publicKeyPem: spkiPem(publicKey), sign };
  const certificateChain = chain.map((c, i) => certificateDer(c, i));
  const leaf = certificateChain[0];
  if (leaf === undefined) throw new CertificateError('the certificate chain is empty');
  const certified = new X509Certificate(Buffer.from(leaf)).publicKey;
  if (!certified.equals(publicKey))
    throw new KeyMismatchError('the leaf certificate does not certify this private key');
  return { algorithm, certificateChain, sign };
}

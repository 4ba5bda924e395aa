import { createPublicKey } from 'node:crypto';
import {
  inProcessDataKeyApi,
  kmsEnvelopeKeys,
  MAX_PLAINTEXT_BYTES,
  type KmsService,
  type Principal,
} from '../kms/index.ts';
import type { KeySigner, SigningAlgorithm } from '../signing/index.ts';
import type { ArtifactKeys } from './artifacts.ts';
import { InvalidInputError, TooLargeError } from './errors.ts';

/**
 * An OMS `KeySigner` whose private key stays in the KMS: `sign` sends the DSSE pre-authentication encoding to
 * KmsService.sign (which hashes it with the curve's hash and returns DER ECDSA, exactly the Signer contract).
 * The public key is the KMS key's latest version at creation time; if the key rotates before `sign` runs, the
 * KMS signs with the new version and signManifest's self-check refuses the mismatching signature.
 */
export interface KmsModelSigner extends KeySigner {
  /** `kms:<key name>#<version>`: the signer identity recorded with the signature. */
  readonly identity: string;
  readonly keyName: string;
  readonly keyVersion: number;
}

const CURVES: Readonly<Record<string, SigningAlgorithm>> = {
  prime256v1: 'ecdsa-p256-sha256',
  secp384r1: 'ecdsa-p384-sha384',
};

export async function kmsModelSigner(
  kms: KmsService,
  principal: Principal,
  keyName: string,
): Promise<KmsModelSigner> {
  const { pem, keyVersion } = await kms.publicKey(principal, keyName);
  const key = createPublicKey(pem);
  const curve = key.asymmetricKeyType === 'ec' ? key.asymmetricKeyDetails?.namedCurve : undefined;
  const algorithm = curve === undefined ? undefined : CURVES[curve];
  if (algorithm === undefined) {
    throw new InvalidInputError(`KMS key ${keyName} is not an ECDSA P-256 or P-384 signing key`);
  }
  return {
    algorithm,
    publicKeyPem: pem,
    identity: `kms:${keyName}#${keyVersion}`,
    keyName,
    keyVersion,
    async sign(data: Uint8Array): Promise<Uint8Array> {
      // The KMS bounds what it signs; a statement over very many files exceeds it (docs/registry.md, limits).
      if (data.byteLength > MAX_PLAINTEXT_BYTES) {
        throw new TooLargeError(
          `the signed statement is ${data.byteLength} bytes; the KMS signs at most ${MAX_PLAINTEXT_BYTES}`,
        );
      }
      return (await kms.sign(principal, keyName, data)).signature;
    },
  };
}

/**
 * The KMS wiring of a registry: artifact key slots (data keys from `dataKeyName`, an aes256-gcm key) and a
 * signer factory over `signingKeyName` (ecdsa-p256/p384). The registry calls the KMS as `principal`, its own
 * service identity: callers are authorised by the registry, the registry by the KMS.
 */
export function kmsRegistryKeys(
  kms: KmsService,
  principal: Principal,
  names: { readonly dataKeyName: string; readonly signingKeyName: string },
): { keys: ArtifactKeys; signer: () => Promise<KmsModelSigner> } {
  return {
    keys: kmsEnvelopeKeys(inProcessDataKeyApi(kms, principal), names.dataKeyName),
    signer: () => kmsModelSigner(kms, principal, names.signingKeyName),
  };
}

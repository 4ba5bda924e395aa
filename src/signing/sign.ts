import { createPublicKey, X509Certificate, type KeyObject } from 'node:crypto';
import { buildBundle, parseBundle, type BundleJson } from './bundle.ts';
import { IN_TOTO_PAYLOAD_TYPE, pae, verifyDsse } from './dsse.ts';
import { CertificateError, KeyMismatchError, SignatureError } from './errors.ts';
import { serializeModel, type SerializeOptions } from './serialize.ts';
import { algorithmOf, publicKeyHint, type Signer } from './signer.ts';
import {
  buildStatement,
  encodeStatement,
  parseStatement,
  type Manifest,
  type Statement,
} from './statement.ts';

/** Signing (§6): serialize the model, wrap the manifest in a statement, DSSE-sign it, assemble the bundle. */

export interface SignedModel {
  /** The OMS bundle; write it with JSON.stringify (conventionally to `<model>.sig`, outside the model or excluded). */
  readonly bundle: BundleJson;
  readonly statement: Statement;
}

function signerPublicKey(signer: Signer): KeyObject {
  if ('certificateChain' in signer) {
    const leaf = signer.certificateChain[0];
    if (leaf === undefined) throw new CertificateError('the signer has an empty certificate chain');
    try {
      return new X509Certificate(Buffer.from(leaf)).publicKey;
    } catch (err) {
      throw new CertificateError('the signer leaf certificate cannot be parsed', { cause: err });
    }
  }
  try {
    return createPublicKey(signer.publicKeyPem);
  } catch (err) {
    throw new KeyMismatchError(`the signer publicKeyPem cannot be parsed (${String(err)})`);
  }
}

function checkedPublicKey(signer: Signer): KeyObject {
  const publicKey = signerPublicKey(signer);
  if (algorithmOf(publicKey) !== signer.algorithm) {
    throw new KeyMismatchError(
      `the signer announces ${signer.algorithm} but its public key is ${algorithmOf(publicKey)}`,
    );
  }
  return publicKey;
}

export async function signModel(
  modelPath: string,
  signer: Signer,
  options: SerializeOptions = {},
): Promise<SignedModel> {
  // Checked before hashing: a misconfigured signer should not cost a pass over a multi-GB model.
  checkedPublicKey(signer);
  return signManifest(await serializeModel(modelPath, options), signer);
}

/**
 * Signs an already computed manifest (e.g. digests a registry recorded when it stored the files), with the same
 * checks as signModel. The caller vouches that the manifest describes the content it means to sign.
 */
export async function signManifest(manifest: Manifest, signer: Signer): Promise<SignedModel> {
  const publicKey = checkedPublicKey(signer);
  const statement = buildStatement(manifest);
  const payload = encodeStatement(statement);
  const signature = await signer.sign(pae(IN_TOTO_PAYLOAD_TYPE, payload));
  // A remote signer (KMS, HSM) is checked like any other party: a signature that does not verify under the key
  // the bundle will name is caught here, not by the first consumer.
  if (!verifyDsse(IN_TOTO_PAYLOAD_TYPE, payload, [signature], publicKey)) {
    throw new SignatureError('the signer returned a signature that does not verify under its own public key');
  }
  const identity =
    'certificateChain' in signer
      ? { certificates: signer.certificateChain }
      : { hint: publicKeyHint(publicKey) };
  const bundle = buildBundle(identity, payload, signature);
  // §3.1: producers SHOULD validate their output against the schemas.
  parseBundle(bundle);
  parseStatement(payload);
  return { bundle, statement };
}

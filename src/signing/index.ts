/**
 * OpenSSF Model Signing (OMS) v1.0: sign and verify model and dataset directories as Sigstore v0.3 bundles carrying
 * a DSSE-signed in-toto statement. See docs/signing.md for what is supported and the exact rules.
 */
export { signManifest, signModel, type SignedModel } from './sign.ts';
export {
  verifyBundle,
  verifyModel,
  type VerificationTrust,
  type VerifiedBundle,
  type VerifiedModel,
  type VerifyModelOptions,
} from './verify.ts';
export { DEFAULT_SHARD_SIZE, serializeModel, type SerializeOptions } from './serialize.ts';
export {
  localKeySigner,
  publicKeyHint,
  type CertificateSigner,
  type KeySigner,
  type Signer,
  type SigningAlgorithm,
} from './signer.ts';
export {
  BUNDLE_MEDIA_TYPE,
  parseBundle,
  type BundleJson,
  type ParsedBundle,
  type VerificationMaterial,
} from './bundle.ts';
export {
  PREDICATE_TYPE,
  STATEMENT_TYPE,
  parseStatement,
  rootDigest,
  type Manifest,
  type ResourceDescriptor,
  type SerializationParameters,
  type Statement,
} from './statement.ts';
export { IN_TOTO_PAYLOAD_TYPE, pae } from './dsse.ts';
export type { CertificateInput } from './certificates.ts';
export type { HashAlgorithm } from './hash-core.ts';
export {
  BundleFormatError,
  CertificateError,
  KeyMismatchError,
  ModelMismatchError,
  ModelSigningError,
  SerializationError,
  SignatureError,
  StatementError,
  UnsupportedError,
} from './errors.ts';

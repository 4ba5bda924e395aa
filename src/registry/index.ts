/**
 * Model and dataset registry: versions identified by their OMS root digest, artifacts envelope-encrypted under
 * KMS data keys in a content-addressed blob store, scans, signatures, gated promotion, quarantine, lineage and
 * ML-BOMs. See docs/registry.md.
 */
export {
  Registry,
  DEFAULT_LIMITS,
  DEFAULT_SCANNER,
  type Ancestry,
  type DatasetMetadata,
  type DatasetReference,
  type LineageInput,
  type ModelMetadata,
  type PromotionResult,
  type RegistryAuthorizer,
  type RegistryLimits,
  type RegistryOptions,
  type RegistryScanner,
  type Servability,
  type SignerFactory,
  type TrustedSigner,
  type VerifyResult,
} from './registry.ts';
export { RegistryRepository, REGISTRY_MIGRATIONS, type RegistrySchema } from './repository.ts';
export { FsBlobStore, type BlobPutOptions, type BlobRef, type BlobStore } from './blob-store.ts';
export { ArtifactVault, artifactContext, type ArtifactBinding, type ArtifactKeys } from './artifacts.ts';
export { kmsModelSigner, kmsRegistryKeys, type KmsModelSigner } from './kms-signer.ts';
export { buildModelBom, BomValidationError, type BomInput } from './bom.ts';
export {
  NAME_PATTERN,
  VERSION_PATTERN,
  SENSITIVITIES,
  STAGES,
  MAX_PATH_BYTES,
  parseArtifactPath,
  parseDigest,
  parseName,
  parseParameters,
  parseSensitivity,
  parseStage,
  parseVersion,
  type ParameterValue,
  type Sensitivity,
  type Stage,
} from './names.ts';
export * from './errors.ts';
export type * from './types.ts';

export * from './errors.ts';
export * from './types.ts';
export { BUILT_IN_ROLES, BuiltInRoleAuthorizer, KMS_ACTIONS } from './authz.ts';
export type { Authorizer, KmsAction } from './authz.ts';
export { formatCiphertext, parseCiphertext } from './ciphertext.ts';
export {
  KmsService,
  MAX_BATCH_ITEMS,
  MAX_CONTEXT_BYTES,
  MAX_PLAINTEXT_BYTES,
  MAX_RANDOM_REQUEST_BYTES,
  SYSTEM_PRINCIPAL,
} from './service.ts';
export type { BatchResult, CreateKeyRequest, KeyInfo, KmsServiceOptions } from './service.ts';
export type { KmsRepository } from './repository.ts';
export { KEYSTORE_MIGRATIONS, KMS_METADATA_MIGRATIONS, SqlKmsRepository } from './sql-repository.ts';
export { openKmsRuntime } from './runtime.ts';
export type { KmsRuntime, KmsRuntimeOptions } from './runtime.ts';
export { startKmsScheduler } from './scheduler.ts';
export type { KmsScheduler } from './scheduler.ts';
export { SealedError } from './root/types.ts';
export type { RootKind, RootOfTrust, RootStatus } from './root/types.ts';
export { SoftwareRootError, SoftwareRootOfTrust, fileSealStateStore } from './root/software.ts';
export type { Pkcs11RootOfTrust } from './root/pkcs11.ts';
import type { Pkcs11RootOfTrust } from './root/pkcs11.ts';
export { inProcessDataKeyApi, kmsEnvelopeKeys } from './envelope-keys.ts';

/**
 * Opens the PKCS#11 root configured by WARDEN_PKCS11_* variables (docs/hsm.md). The native PKCS#11 binding is
 * loaded here, on demand, so that importing the KMS does not load it where no HSM is configured.
 */
export async function openPkcs11Root(env: NodeJS.ProcessEnv = process.env): Promise<Pkcs11RootOfTrust> {
  const { Pkcs11RootOfTrust, pkcs11ConfigFromEnv } = await import('./root/pkcs11.ts');
  return Pkcs11RootOfTrust.open(await pkcs11ConfigFromEnv(env));
}

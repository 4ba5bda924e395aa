export { KmsClient } from './client.ts';
export type { CiphertextInput, KmsClientOptions } from './client.ts';
export { KmsClientError } from './errors.ts';
export { buildImportBlob } from './byok.ts';
export type * from './types.ts';
export { remoteDataKeyApi, remoteEnvelopeKeys } from './envelope-keys.ts';
export { WardenHttp } from './http.ts';
export type { RequestOptions, WardenHttpOptions } from './http.ts';
export { AuditClient } from './audit.ts';
export type {
  AuditCheckpoint,
  AuditEventQuery,
  AuditEventRecord,
  ConsistencyProofResponse,
  InclusionProofResponse,
} from './audit.ts';
export { RegistryClient } from './registry.ts';
export type { TransferProgress } from './registry.ts';

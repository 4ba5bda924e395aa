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
export { PoliciesClient } from './policies.ts';
export type {
  PolicyAttrValue,
  PolicyDiagnosticInfo,
  PolicyEntryInfo,
  SimulatedDecision,
  SimulatedRequest,
} from './policies.ts';
export { RegistryClient } from './registry.ts';
export type { TransferProgress } from './registry.ts';
export {
  IdentityClient,
  PUBLIC_CLIENT_ID,
  TokenProviderError,
  clientCredentialsTokenProvider,
  sessionFrom,
  sessionTokenProvider,
} from './identity.ts';
export type {
  ApiKeyInfo,
  BootstrapRequest,
  ClientAuthMethod,
  ClientCredentials,
  ClientCredentialsProviderOptions,
  CreateApiKeyRequest,
  CreateServiceAccountRequest,
  CreateUserRequest,
  CreatedApiKey,
  CreatedServiceAccount,
  Introspection,
  LoginRequest,
  RoleMapping,
  ServiceAccountInfo,
  Session,
  SessionProviderOptions,
  SessionTokens,
  TokenProvider,
  TokenResponse,
  UpdateServiceAccountRequest,
  UpdateUserRequest,
  UserInfo,
} from './identity.ts';

export { DecisionCache } from './cache.ts';
export type { DecisionCacheOptions, DecisionCacheStats } from './cache.ts';
export { PolicyEngine, PolicyEngineError, clockAt } from './engine.ts';
export type {
  AttrValue,
  Attrs,
  AuthzContext,
  AuthzPrincipal,
  AuthzRequest,
  AuthzResource,
  Clock,
  Decision,
  PolicyEngineOptions,
} from './engine.ts';
export {
  PURPOSE_PATTERN,
  cedarKmsAuthorizer,
  declaredPurpose,
  kmsKeyId,
  kmsPrincipal,
  principalContext,
} from './kms-adapter.ts';
export type { KmsAuthorizerOptions } from './kms-adapter.ts';
export { BUILT_IN_POLICIES, BUILT_IN_ROLE_NAMES, GuardrailConfigError, guardrailPolicies } from './roles.ts';
export type { BuiltInRole, GuardrailOptions } from './roles.ts';
export {
  ACTIONS,
  ACTION_IDS,
  DATASET_SENSITIVITIES,
  ENVIRONMENTS,
  KMS_ACTIONS,
  MODEL_STAGES,
  NAMESPACE,
  PRINCIPAL_TYPES,
  RESOURCE_TYPES,
  WARDEN_SCHEMA,
  isActionId,
  kmsCedarAction,
} from './schema.ts';
export type { ActionId, PrincipalType, ResourceType } from './schema.ts';
export { CUSTOM_POLICY_ID, PolicyStore, PolicyStoreError } from './store.ts';
export type { PolicyChange, PolicyEntry, PolicySource, PolicyStoreOptions } from './store.ts';
export { MAX_POLICY_TEXT_CHARS, PolicyValidationError, validatePolicies } from './validate.ts';
export type { PolicyDiagnostic, PolicyDiagnosticKind, PolicyValidationResult } from './validate.ts';
export {
  FILE_POLICY_PREFIX,
  POLICY_MIGRATIONS,
  PolicyPersistenceError,
  SqlPolicies,
} from './sql-policies.ts';
export type { PoliciesDB, SqlPoliciesOptions } from './sql-policies.ts';
export { networkOf } from './network.ts';

/**
 * What the OpenAPI document says about the API as a whole: its title and description, the tags it groups
 * operations under, and each operation's `operationId` (what a generated client names the method: the SDK's
 * method name where the SDK has one). The operations themselves come from the route schemas; a test checks that
 * every route has an id here and every tag a description.
 */

export const API_TITLE = 'Warden API';

export const API_DESCRIPTION =
  'Warden protects AI systems: key management (KMS), the tamper-evident audit log, identities and OAuth 2.0 ' +
  'tokens, Cedar policies, the internal CA, the model and dataset registry and the inference gateway. Errors are ' +
  '`{ "error": { "code", "message" } }`. Bytes are standard base64 unless a field says otherwise.';

export const API_TAGS: readonly { readonly name: string; readonly description: string }[] = [
  { name: 'system', description: 'health and this document' },
  { name: 'operator', description: 'root of trust: init, unseal, seal' },
  { name: 'keys', description: 'KMS key administration: create, rotate, disable, destroy, import, export' },
  {
    name: 'crypto',
    description: 'KMS cryptographic operations: encrypt, data keys, rewrap, sign, HMAC, random',
  },
  { name: 'audit', description: 'the Merkle audit log: events, proofs, checkpoints, verification, export' },
  { name: 'policies', description: 'Cedar policies: built-in roles, guardrails, custom policies' },
  { name: 'ca', description: 'the internal certificate authority for TLS and mTLS' },
  {
    name: 'registry',
    description: 'models and datasets: upload, signing, scanning, promotion, quarantine, lineage',
  },
  { name: 'auth', description: "login, bootstrap and the caller's own MFA and API keys" },
  {
    name: 'identity',
    description: 'administration of users, service accounts, API keys and IdP role mappings',
  },
  {
    name: 'oauth',
    description: 'OAuth 2.0 authorization server: token, revocation, introspection, metadata',
  },
  { name: 'gateway', description: 'the inference gateway: OpenAI-compatible and KServe v2 model endpoints' },
];

/** `METHOD path` (the document's path syntax) → operationId. */
export const OPERATION_IDS: Readonly<Record<string, string>> = {
  'GET /v1/health': 'health',
  'GET /v1/openapi.json': 'openapi',

  'GET /v1/operator/status': 'status',
  'POST /v1/operator/init': 'init',
  'POST /v1/operator/unseal': 'unseal',
  'POST /v1/operator/seal': 'seal',

  'POST /v1/kms/keys': 'createKey',
  'GET /v1/kms/keys': 'listKeys',
  'GET /v1/kms/keys/{name}': 'getKey',
  'PATCH /v1/kms/keys/{name}': 'updateKey',
  'POST /v1/kms/keys/{name}/rotate': 'rotateKey',
  'POST /v1/kms/keys/{name}/disable': 'disableKey',
  'POST /v1/kms/keys/{name}/enable': 'enableKey',
  'POST /v1/kms/keys/{name}/versions/{version}/destroy': 'destroyVersion',
  'POST /v1/kms/keys/{name}/versions/{version}/cancel-destroy': 'cancelDestroy',
  'GET /v1/kms/keys/{name}/public-key': 'publicKey',
  'GET /v1/kms/import-wrapping-key': 'importWrappingKey',
  'POST /v1/kms/keys/{name}/import': 'importKey',
  'POST /v1/kms/keys/{name}/export': 'exportKey',
  'POST /v1/kms/encrypt/{name}': 'encrypt',
  'POST /v1/kms/decrypt': 'decrypt',
  'POST /v1/kms/datakey/{name}': 'generateDataKey',
  'POST /v1/kms/decrypt-datakey': 'decryptDataKey',
  'POST /v1/kms/rewrap': 'rewrap',
  'POST /v1/kms/sign/{name}': 'sign',
  'POST /v1/kms/verify/{name}': 'verify',
  'POST /v1/kms/hmac/{name}': 'hmac',
  'POST /v1/kms/verify-hmac/{name}': 'verifyHmac',
  'POST /v1/kms/random': 'random',

  'GET /v1/audit/verifier-key': 'auditVerifierKey',
  'GET /v1/audit/checkpoint': 'auditCheckpoint',
  'GET /v1/audit/events': 'auditEvents',
  'GET /v1/audit/events/{index}/proof': 'auditInclusionProof',
  'GET /v1/audit/consistency': 'auditConsistencyProof',
  'POST /v1/audit/hash': 'auditHash',
  'POST /v1/audit/verify': 'auditVerify',
  'GET /v1/audit/export': 'auditExport',

  'GET /v1/policies': 'listPolicies',
  'GET /v1/policies/{id}': 'getPolicy',
  'PUT /v1/policies/{id}': 'putPolicy',
  'DELETE /v1/policies/{id}': 'deletePolicy',
  'POST /v1/policies/validate': 'validatePolicies',
  'POST /v1/policies/simulate': 'simulatePolicies',

  'GET /v1/ca/certificates': 'caCertificates',
  'GET /v1/ca/crl': 'caCrl',
  'POST /v1/ca/init': 'caInit',
  'POST /v1/ca/rotate': 'caRotate',
  'POST /v1/ca/issue': 'caIssue',
  'POST /v1/ca/revoke': 'caRevoke',
  'GET /v1/ca/issued': 'caListIssued',
  'GET /v1/ca/issued/{serial}': 'caGetIssued',

  'POST /v1/chat/completions': 'chatCompletions',
  'POST /v1/completions': 'completions',
  'POST /v1/embeddings': 'embeddings',
  'POST /v2/models/{model}/infer': 'kserveInfer',
  'POST /v1/models/{model}:predict': 'predict',

  'GET /v1/models': 'listModels',
  'GET /v1/models/{name}': 'getModel',
  'GET /v1/models/{name}/versions/{version}': 'getVersion',
  'DELETE /v1/models/{name}/versions/{version}/upload': 'abortModelUpload',
  'POST /v1/models/{name}/versions': 'registerModel',
  'GET /v1/models/{name}/versions/{version}/files/{*}': 'downloadModelFile',
  'PUT /v1/models/{name}/versions/{version}/files/{*}': 'uploadModelFile',
  'POST /v1/models/{name}/versions/{version}/sign': 'signModel',
  'POST /v1/models/{name}/versions/{version}/verify': 'verifyModel',
  'POST /v1/models/{name}/versions/{version}/scan': 'scanModel',
  'GET /v1/models/{name}/versions/{version}/scan': 'scanResults',
  'POST /v1/models/{name}/versions/{version}/waive': 'waive',
  'POST /v1/models/{name}/versions/{version}/promote': 'promote',
  'GET /v1/models/{name}/approvals': 'approvals',
  'POST /v1/models/{name}/approvals/{id}/approve': 'approve',
  'POST /v1/models/{name}/quarantine': 'quarantine',
  'POST /v1/models/{name}/release': 'release',
  'GET /v1/models/{name}/versions/{version}/servable': 'servable',
  'GET /v1/models/{name}/versions/{version}/lineage': 'modelLineage',
  'GET /v1/models/{name}/versions/{version}/bom': 'bom',
  'GET /v1/registry/epoch': 'epoch',
  'POST /v1/registry/rescan': 'rescanOutdated',
  'GET /v1/datasets': 'listDatasets',
  'GET /v1/datasets/{name}': 'datasetVersions',
  'GET /v1/datasets/{name}/versions/{version}': 'getDatasetVersion',
  'POST /v1/datasets/{name}/versions': 'registerDataset',
  'PUT /v1/datasets/{name}/versions/{version}/files/{*}': 'uploadDatasetFile',
  'POST /v1/datasets/{name}/versions/{version}/sign': 'signDataset',
  'POST /v1/datasets/{name}/versions/{version}/verify': 'verifyDataset',
  'GET /v1/datasets/{name}/versions/{version}/lineage': 'datasetLineage',
  'GET /v1/lineage/datasets/{digest}': 'trainedOn',

  'POST /v1/auth/webauthn/register/options': 'webauthnRegisterOptions',
  'POST /v1/auth/webauthn/register/verify': 'webauthnRegisterVerify',
  'POST /v1/auth/webauthn/authenticate/options': 'webauthnAuthenticateOptions',
  'POST /v1/auth/webauthn/authenticate/verify': 'webauthnAuthenticateVerify',
  'POST /v1/auth/login': 'login',
  'GET /v1/auth/oidc/start': 'oidcStart',
  'POST /v1/auth/oidc/callback': 'oidcCallback',
  'POST /v1/auth/bootstrap': 'redeemBootstrap',
  'POST /v1/auth/mfa/totp': 'beginTotpEnrolment',
  'POST /v1/auth/mfa/totp/verify': 'confirmTotpEnrolment',
  'GET /v1/auth/api-keys': 'listOwnApiKeys',
  'POST /v1/auth/api-keys': 'createOwnApiKey',
  'DELETE /v1/auth/api-keys/{id}': 'revokeOwnApiKey',

  'GET /v1/identities/users': 'listUsers',
  'POST /v1/identities/users': 'createUser',
  'GET /v1/identities/users/{username}': 'getUser',
  'PATCH /v1/identities/users/{username}': 'updateUser',
  'DELETE /v1/identities/users/{username}': 'deleteUser',
  'POST /v1/identities/users/{username}/password': 'setPassword',
  'POST /v1/identities/users/{username}/mfa/reset': 'resetMfa',
  'GET /v1/identities/service-accounts': 'listServiceAccounts',
  'POST /v1/identities/service-accounts': 'createServiceAccount',
  'GET /v1/identities/service-accounts/{clientId}': 'getServiceAccount',
  'PATCH /v1/identities/service-accounts/{clientId}': 'updateServiceAccount',
  'DELETE /v1/identities/service-accounts/{clientId}': 'deleteServiceAccount',
  'POST /v1/identities/service-accounts/{clientId}/secret': 'rotateClientSecret',
  'GET /v1/identities/api-keys': 'listApiKeys',
  'POST /v1/identities/api-keys': 'createApiKey',
  'GET /v1/identities/api-keys/{id}': 'getApiKey',
  'DELETE /v1/identities/api-keys/{id}': 'revokeApiKey',
  'GET /v1/identities/role-mappings': 'listRoleMappings',
  'PUT /v1/identities/role-mappings/{group}': 'putRoleMapping',
  'DELETE /v1/identities/role-mappings/{group}': 'deleteRoleMapping',

  'POST /oauth/token': 'token',
  'POST /oauth/revoke': 'revokeToken',
  'POST /oauth/introspect': 'introspect',
  'GET /.well-known/oauth-authorization-server': 'metadata',
  'GET /.well-known/jwks.json': 'jwks',
};

type Operations = Record<string, { operationId?: string } | undefined>;

/** Sets each operation's `operationId` from `OPERATION_IDS` (for @fastify/swagger's `transformObject`). */
export function withOperationIds<T extends object>(document: T): T {
  const paths = (document as { paths?: Record<string, Operations | undefined> }).paths ?? {};
  for (const [path, item] of Object.entries(paths)) {
    for (const [method, operation] of Object.entries(item ?? {})) {
      const id = OPERATION_IDS[`${method.toUpperCase()} ${path}`];
      if (operation !== undefined && id !== undefined) operation.operationId = id;
    }
  }
  return document;
}

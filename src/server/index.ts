export {
  createKmsServer,
  listRoutes,
  DEFAULT_BATCH_BODY_LIMIT,
  DEFAULT_BODY_LIMIT,
  API_VERSION,
} from './server.ts';
export type { KmsServerOptions, RouteInfo } from './server.ts';
export type { OperatorControl } from './operator.ts';
export { BOOTSTRAP_PRINCIPAL, bearerToken, bootstrapTokenAuthenticator, firstOf } from './auth.ts';
export type { Authenticate, AuthenticationInput } from './auth.ts';
export { PermissionDeniedError } from './errors.ts';
export {
  RouteDeclarationError,
  policyChangeCheck,
  requestContext,
  selfServiceAuthorizer,
} from './route-authz.ts';
export type { RouteAuthz } from './route-authz.ts';
export { kmsRoute, principalOf } from './context.ts';
export { mapError } from './errors.ts';
export type { ErrorBody } from './errors.ts';
export type { KeyInfoView, KeyView, VersionView } from './schemas.ts';
export { auditRoutes } from './routes/audit.ts';
export type { AuditRouteDeps } from './routes/audit.ts';
export { oauthRoutes } from './routes/oauth.ts';
export { identitiesRoutes } from './routes/identities.ts';
export { policyRoutes } from './routes/policies.ts';
export { caRoutes } from './routes/ca.ts';
export { authOidcRoutes } from './routes/auth-oidc.ts';
export type { AuthOidcRouteDeps, LoginSession } from './routes/auth-oidc.ts';
export { webauthnRoutes } from './routes/webauthn.ts';
export type { WebAuthnRouteDeps } from './routes/webauthn.ts';
export { registryRoutes } from './routes/registry.ts';

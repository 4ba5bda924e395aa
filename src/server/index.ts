export {
  createKmsServer,
  listRoutes,
  DEFAULT_BATCH_BODY_LIMIT,
  DEFAULT_BODY_LIMIT,
  API_VERSION,
} from './server.ts';
export type { KmsServerOptions, RouteInfo } from './server.ts';
export type { OperatorAction, OperatorControl } from './operator.ts';
export { BOOTSTRAP_PRINCIPAL, bearerToken, bootstrapTokenAuthenticator } from './auth.ts';
export type { Authenticate } from './auth.ts';
export { mapError } from './errors.ts';
export type { ErrorBody } from './errors.ts';
export type { KeyInfoView, KeyView, VersionView } from './schemas.ts';

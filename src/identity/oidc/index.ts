export { OidcError } from './errors.ts';
export type { OidcErrorCode } from './errors.ts';
export { DEFAULT_OIDC_ALGORITHMS, loadOidcClientSecret, resolveOidcConfig } from './config.ts';
export type { OidcConfig, ResolvedOidcConfig, TokenEndpointAuthMethod } from './config.ts';
export { MemoryPendingLoginStore } from './pending.ts';
export type { PendingLogin, PendingLoginStore } from './pending.ts';
export { OidcRelyingParty } from './relying-party.ts';
export type {
  OidcIdentity,
  OidcRelyingPartyOptions,
  OidcRequestContext,
  ProviderMetadata,
  StartedLogin,
  ValidatedAccessToken,
} from './relying-party.ts';

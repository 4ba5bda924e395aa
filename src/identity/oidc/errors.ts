/**
 * Errors of the OIDC relying party. `code` is stable, `httpStatus` is what the HTTP layer answers with, and the
 * message is fixed per code: it never quotes a token, a claim, a state value or the identity provider's own
 * error text (which could echo request data). `reason` is a short, non-secret detail for the audit trail.
 */
export type OidcErrorCode =
  | 'oidc_config_invalid'
  | 'oidc_discovery_failed'
  | 'oidc_provider_unavailable'
  | 'oidc_redirect_uri_not_allowed'
  | 'oidc_login_pending_limit'
  | 'oidc_login_state_invalid'
  | 'oidc_idp_error'
  | 'oidc_token_exchange_failed'
  | 'oidc_id_token_invalid'
  | 'oidc_access_token_invalid'
  | 'oidc_userinfo_invalid'
  | 'oidc_claims_invalid'
  | 'oidc_no_role';

const MESSAGES: Readonly<Record<OidcErrorCode, readonly [number, string]>> = {
  oidc_config_invalid: [500, 'the OpenID Connect configuration is invalid'],
  oidc_discovery_failed: [502, 'the identity provider metadata could not be loaded or is invalid'],
  oidc_provider_unavailable: [502, 'the identity provider could not be reached'],
  oidc_redirect_uri_not_allowed: [400, 'the redirect URI is not allowed'],
  oidc_login_pending_limit: [503, 'too many logins are in progress; try again later'],
  oidc_login_state_invalid: [400, 'the login is unknown, expired or already completed; start again'],
  oidc_idp_error: [401, 'the identity provider refused the login'],
  oidc_token_exchange_failed: [401, 'the identity provider refused the authorization code'],
  oidc_id_token_invalid: [401, 'the ID token is invalid'],
  oidc_access_token_invalid: [401, 'the access token is invalid'],
  oidc_userinfo_invalid: [401, 'the identity provider returned invalid user information'],
  oidc_claims_invalid: [401, 'the identity provider returned invalid claims'],
  oidc_no_role: [403, 'no Warden role is mapped to this identity'],
};

export class OidcError extends Error {
  override readonly name = 'OidcError';
  readonly code: OidcErrorCode;
  readonly httpStatus: number;
  /** Non-secret detail for logs and audit (`exp`, `nonce`, `aud`, an HTTP status...). Never shown to clients. */
  readonly reason: string;

  constructor(code: OidcErrorCode, reason: string, options?: { cause?: unknown }) {
    const [status, message] = MESSAGES[code];
    super(message, options);
    this.code = code;
    this.httpStatus = status;
    this.reason = reason;
  }
}

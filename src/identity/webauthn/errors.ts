/**
 * Errors of the WebAuthn ceremonies. Messages are fixed per code and never quote the client's data (origins,
 * challenges, credential ids come from the client and would be reflected otherwise); `reason` is a short,
 * non-secret detail for the audit trail.
 */
export type WebAuthnErrorCode =
  | 'webauthn_config_invalid'
  | 'webauthn_response_malformed'
  | 'webauthn_challenge_invalid'
  | 'webauthn_challenge_limit'
  | 'webauthn_origin_mismatch'
  | 'webauthn_rpid_mismatch'
  | 'webauthn_verification_failed'
  | 'webauthn_credential_unknown'
  | 'webauthn_credential_exists'
  | 'webauthn_credential_suspended'
  | 'webauthn_counter_regression'
  | 'webauthn_no_credentials';

const MESSAGES: Readonly<Record<WebAuthnErrorCode, readonly [number, string]>> = {
  webauthn_config_invalid: [500, 'the WebAuthn configuration is invalid'],
  webauthn_response_malformed: [400, 'the authenticator response is malformed'],
  webauthn_challenge_invalid: [400, 'the challenge is unknown, expired or already used; start again'],
  webauthn_challenge_limit: [503, 'too many ceremonies are in progress; try again later'],
  webauthn_origin_mismatch: [400, 'the response was made for another origin'],
  webauthn_rpid_mismatch: [400, 'the response was made for another relying party'],
  webauthn_verification_failed: [401, 'the authenticator response could not be verified'],
  webauthn_credential_unknown: [401, 'the security key is not registered for this user'],
  webauthn_credential_exists: [409, 'this security key is already registered'],
  webauthn_credential_suspended: [
    401,
    'this security key is suspended; register it again or use another factor',
  ],
  webauthn_counter_regression: [
    401,
    'the security key signature counter went backwards: it may have been cloned; the key is suspended',
  ],
  webauthn_no_credentials: [400, 'no security key is registered for this user'],
};

export class WebAuthnError extends Error {
  override readonly name = 'WebAuthnError';
  readonly code: WebAuthnErrorCode;
  readonly httpStatus: number;
  readonly reason: string;

  constructor(code: WebAuthnErrorCode, reason: string, options?: { cause?: unknown }) {
    const [status, message] = MESSAGES[code];
    super(message, options);
    this.code = code;
    this.httpStatus = status;
    this.reason = reason;
  }
}

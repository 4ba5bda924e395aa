/**
 * Identity errors: a stable snake_case `code` and an `httpStatus`, which the server maps to
 * `{error:{code,message}}`. Messages never carry a username, password, code, token or key: one uninformative
 * message per failure class, so that an error cannot tell an attacker which part of a credential was wrong.
 */
export class IdentityError extends Error {
  readonly code: string;
  readonly httpStatus: number;
  constructor(code: string, httpStatus: number, message: string) {
    super(message);
    this.name = new.target.name;
    this.code = code;
    this.httpStatus = httpStatus;
  }
}

/** Wrong username, password, second factor, disabled account: all the same to the caller. */
export class InvalidCredentialsError extends IdentityError {
  constructor() {
    super('invalid_credentials', 401, 'the credentials are not valid');
  }
}

/** The password was right but the account has MFA enrolled and no (or no valid-looking) second factor came. */
export class MfaRequiredError extends IdentityError {
  constructor() {
    super('mfa_required', 401, 'a second factor (TOTP or recovery code) is required');
  }
}

export class ThrottledError extends IdentityError {
  readonly retryAfterSeconds: number;
  constructor(retryAfterSeconds: number) {
    super('too_many_attempts', 429, `too many failed attempts: try again in ${retryAfterSeconds} s`);
    this.retryAfterSeconds = retryAfterSeconds;
  }
}

export class IdentityNotFoundError extends IdentityError {
  constructor(kind: 'user' | 'service account' | 'API key' | 'role mapping') {
    super('identity_not_found', 404, `no such ${kind}`);
  }
}

export class IdentityExistsError extends IdentityError {
  constructor(kind: 'user' | 'service account' | 'role mapping') {
    super('identity_exists', 409, `that ${kind} already exists`);
  }
}

export class InvalidIdentityRequestError extends IdentityError {
  constructor(message: string) {
    super('invalid_request', 400, message);
  }
}

export class IdentityForbiddenError extends IdentityError {
  constructor(message: string) {
    super('forbidden', 403, message);
  }
}

export class BootstrapUnavailableError extends IdentityError {
  constructor() {
    super('bootstrap_unavailable', 409, 'the bootstrap token is not valid or has already been redeemed');
  }
}

/** The identity service could not record an audit event, so the operation's result is withheld. */
export class IdentityAuditUnavailableError extends IdentityError {
  constructor() {
    super(
      'audit_unavailable',
      503,
      'the operation was refused because its audit event could not be recorded',
    );
  }
}

/** RFC 6749 §5.2 error codes (and RFC 7009's `unsupported_token_type`). */
export type OAuthErrorCode =
  | 'invalid_request'
  | 'invalid_client'
  | 'invalid_grant'
  | 'unauthorized_client'
  | 'unsupported_grant_type'
  | 'invalid_scope'
  | 'unsupported_token_type'
  | 'server_error'
  | 'temporarily_unavailable';

const OAUTH_STATUS: Readonly<Record<OAuthErrorCode, number>> = {
  invalid_request: 400,
  invalid_client: 401,
  invalid_grant: 400,
  unauthorized_client: 400,
  unsupported_grant_type: 400,
  invalid_scope: 400,
  unsupported_token_type: 400,
  server_error: 500,
  temporarily_unavailable: 503,
};

/**
 * An error of the OAuth endpoints, answered as RFC 6749's `{error, error_description}`. `code` is the RFC's
 * error code so the generic error mapping stays meaningful too.
 */
export class OAuthError extends IdentityError {
  readonly error: OAuthErrorCode;
  readonly description: string;
  constructor(error: OAuthErrorCode, description: string) {
    super(error, OAUTH_STATUS[error], description);
    this.error = error;
    this.description = description;
  }
}

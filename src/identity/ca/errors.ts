/**
 * Every failure of the internal CA and the mTLS helpers is a `CaError` with a stable snake_case `code` and the
 * HTTP status the API answers with. Messages name what was wrong, never the bytes that were (a CSR or a peer
 * certificate is attacker-supplied).
 */
export type CaErrorCode =
  | 'invalid_request'
  | 'invalid_csr'
  | 'csr_signature_invalid'
  | 'invalid_public_key'
  | 'invalid_certificate'
  | 'invalid_crl'
  | 'lifetime_exceeded'
  | 'name_not_allowed'
  | 'ca_not_initialized'
  | 'ca_key_unsuitable'
  | 'ca_signature_mismatch'
  | 'ca_unavailable'
  | 'certificate_not_found'
  | 'already_revoked'
  | 'client_certificate_rejected';

const STATUS: Readonly<Record<CaErrorCode, number>> = {
  invalid_request: 400,
  invalid_csr: 400,
  csr_signature_invalid: 400,
  invalid_public_key: 400,
  invalid_certificate: 400,
  invalid_crl: 400,
  lifetime_exceeded: 400,
  name_not_allowed: 403,
  ca_not_initialized: 409,
  ca_key_unsuitable: 409,
  ca_signature_mismatch: 500,
  ca_unavailable: 503,
  certificate_not_found: 404,
  already_revoked: 409,
  client_certificate_rejected: 401,
};

export class CaError extends Error {
  override readonly name = 'CaError';
  readonly code: CaErrorCode;
  readonly httpStatus: number;

  constructor(code: CaErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.code = code;
    this.httpStatus = STATUS[code];
  }
}

/**
 * A failed KMS call. `status` is the HTTP status (0 when no response arrived: connection or TLS failure) and
 * `code` the server's stable error code (`key_not_found`, `unauthenticated`, `sealed`, ...) or one of the
 * client's own: `connection_failed`, `tls_error`, `timeout`, `invalid_response`, `invalid_options`. Messages
 * never contain the token or request data.
 */
export class KmsClientError extends Error {
  readonly code: string;
  readonly status: number;
  constructor(code: string, status: number, message: string) {
    super(message);
    this.name = 'KmsClientError';
    this.code = code;
    this.status = status;
  }
}

const TLS_CODES = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'ERR_SSL_WRONG_VERSION_NUMBER',
  'ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION',
  'ERR_SSL_UNSUPPORTED_PROTOCOL',
  'EPROTO',
]);

/** Maps a transport failure to a `KmsClientError` naming the address and the failure, nothing else. */
export function transportError(err: unknown, origin: string): KmsClientError {
  const e = err as { code?: unknown; name?: unknown; cause?: { code?: unknown } };
  const code = typeof e.code === 'string' ? e.code : typeof e.cause?.code === 'string' ? e.cause.code : '';
  if (TLS_CODES.has(code) || code.startsWith('ERR_SSL_') || code.startsWith('ERR_TLS_')) {
    const hint = /SELF_SIGNED|UNABLE_TO|ISSUER/.test(code)
      ? ' (is the server certificate trusted? set WARDEN_CACERT or the `ca` option)'
      : '';
    return new KmsClientError('tls_error', 0, `TLS handshake with ${origin} failed: ${code}${hint}`);
  }
  if (
    code === 'UND_ERR_HEADERS_TIMEOUT' ||
    code === 'UND_ERR_BODY_TIMEOUT' ||
    code === 'UND_ERR_CONNECT_TIMEOUT'
  ) {
    return new KmsClientError('timeout', 0, `${origin} did not answer in time`);
  }
  if (code === 'UND_ERR_RES_EXCEEDED_MAX_SIZE') {
    return new KmsClientError('invalid_response', 0, `the response from ${origin} is too large`);
  }
  const reason = CONNECTION_REASONS[code];
  return new KmsClientError(
    'connection_failed',
    0,
    `cannot reach ${origin}${code === '' ? '' : `: ${reason === undefined ? code : `${reason} (${code})`}`}`,
  );
}

/** The usual connection failures in words (the code stays, for searching). */
const CONNECTION_REASONS: Partial<Record<string, string>> = {
  ECONNREFUSED: 'nothing is listening there',
  ENOTFOUND: 'no such host',
  EHOSTUNREACH: 'the host is unreachable',
  ECONNRESET: 'the connection was reset',
};

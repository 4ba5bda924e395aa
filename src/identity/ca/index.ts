/** Warden's internal CA (KMS-held key) and the mutual-TLS helpers built on it. See docs/ca.md. */
export {
  CA_PRINCIPAL,
  CLIENT_LIFETIME,
  CertificateAuthority,
  DEFAULT_CA_LIFETIME_MS,
  DEFAULT_CRL_VALIDITY_MS,
  HARD_MAX_LIFETIME_MS,
  MIN_LIFETIME_MS,
  SERVER_LIFETIME,
} from './authority.ts';
export type {
  CaCertificateInfo,
  CertificateAuthorityOptions,
  Crl,
  IssueRequest,
  IssuedCertificate,
  KeySource,
  LifetimeBounds,
  TrustBundle,
} from './authority.ts';
export { CaError } from './errors.ts';
export type { CaErrorCode } from './errors.ts';
export { CLIENT_KINDS, clientIdentityUri, identityFromUri, parseClientIdentity } from './identity.ts';
export type { ClientIdentity, ClientKind } from './identity.ts';
export {
  ClientCertificateRejectedError,
  RevocationList,
  TrustAnchors,
  mtlsAgent,
  mtlsPool,
  tlsClientOptions,
  tlsServerOptions,
  verifyClientCertificate,
} from './mtls.ts';
export type {
  ClientRejection,
  MtlsDispatcherOptions,
  PeerCertificateInput,
  TlsIdentity,
  VerifiedClient,
  VerifyClientOptions,
} from './mtls.ts';
export { CA_MIGRATIONS, SqlCaRepository } from './repository.ts';
export type { CaSchema, CertificateProfile, CertificateRecord } from './repository.ts';
export { REVOCATION_REASONS, isRevocationReason, publicKeyFromCsr, serialHex, toPem } from './x509.ts';
export type { RevocationReason } from './x509.ts';

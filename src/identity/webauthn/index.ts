export { WebAuthnError } from './errors.ts';
export type { WebAuthnErrorCode } from './errors.ts';
export { MemoryChallengeStore } from './challenges.ts';
export type { CeremonyKind, ChallengeStore, PendingChallenge } from './challenges.ts';
export { SqlWebAuthnCredentialStore, WEBAUTHN_MIGRATIONS } from './store.ts';
export type { WebAuthnCredential, WebAuthnCredentialStore, WebAuthnSchema } from './store.ts';
export { WebAuthnService } from './service.ts';
export type {
  UserVerificationPolicy,
  WebAuthnAuthenticationResult,
  WebAuthnConfig,
  WebAuthnRequestContext,
  WebAuthnServiceOptions,
  WebAuthnUser,
} from './service.ts';

import { createHash } from 'node:crypto';
import {
  generateAuthenticationOptions,
  generateRegistrationOptions,
  verifyAuthenticationResponse,
  verifyRegistrationResponse,
} from '@simplewebauthn/server';
import type {
  AuthenticationResponseJSON,
  PublicKeyCredentialCreationOptionsJSON,
  PublicKeyCredentialRequestOptionsJSON,
  RegistrationResponseJSON,
} from '@simplewebauthn/server';
import { decodeAttestationObject, parseAuthenticatorData } from '@simplewebauthn/server/helpers';
import type { AuditRecorder } from '../../audit/index.ts';
import { constantTimeEqual, randomBytes } from '../../crypto/index.ts';
import { MemoryChallengeStore } from './challenges.ts';
import type { ChallengeStore, CeremonyKind } from './challenges.ts';
import { WebAuthnError } from './errors.ts';
import type { WebAuthnCredential, WebAuthnCredentialStore } from './store.ts';

export type UserVerificationPolicy = 'required' | 'preferred' | 'discouraged';

export interface WebAuthnConfig {
  /** Relying party id: the registrable domain the console is served from (e.g. `warden.example.com`). */
  readonly rpId: string;
  readonly rpName: string;
  /** Origins allowed in clientDataJSON (e.g. `https://warden.example.com`). Exact match. */
  readonly origins: readonly string[];
  /** Default `preferred`; `required` makes a PIN or biometric mandatory (and checked). */
  readonly userVerification?: UserVerificationPolicy;
  /** Default `none`; `direct` asks for the authenticator's attestation statement and verifies it. */
  readonly attestation?: 'none' | 'direct';
  /** Lifetime of a challenge, milliseconds (default 300,000), also the ceremony timeout given to the browser. */
  readonly challengeTtlMs?: number;
}

/** Who is registering or authenticating. `id` is Warden's user id. */
export interface WebAuthnUser {
  readonly id: string;
  readonly name: string;
  readonly displayName?: string;
}

/** The caller's request, for the audit trail. */
export interface WebAuthnRequestContext {
  readonly requestId?: string;
  readonly sourceIp?: string;
  readonly userAgent?: string;
}

export interface WebAuthnAuthenticationResult {
  readonly userId: string;
  readonly credentialId: string;
  readonly userVerified: boolean;
  /** RFC 8176 values for the session: `hwk` (proof of a hardware key), plus `user` when verified. */
  readonly amr: readonly string[];
  /** When this second factor was passed (epoch ms): the session's `mfaAt`. */
  readonly mfaAt: number;
}

export interface WebAuthnServiceOptions {
  readonly credentials: WebAuthnCredentialStore;
  readonly challenges?: ChallengeStore;
  readonly audit: AuditRecorder;
  readonly now?: () => number;
}

/** ES256, EdDSA, RS256: what security keys implement. */
const SUPPORTED_ALGORITHMS = [-7, -8, -257];
const B64URL = /^[A-Za-z0-9_-]+$/;
const MAX_FIELD_CHARS = 16 * 1024;
const MAX_CREDENTIAL_ID_CHARS = 1366; // 1023 bytes, the WebAuthn maximum
const MAX_CREDENTIALS_PER_USER = 20;
const NAME_PATTERN = /^[^\p{Cc}\p{Cf}]{1,64}$/u;

/** The user handle stored on keys: an opaque digest of the user id, since any site may read it back. */
function userHandleOf(userId: string): Buffer<ArrayBuffer> {
  return createHash('sha256').update(`warden-user:${userId}`).digest();
}

function malformed(reason: string): never {
  throw new WebAuthnError('webauthn_response_malformed', reason);
}

function b64urlField(value: unknown, what: string, max = MAX_FIELD_CHARS): string {
  if (typeof value !== 'string' || value.length === 0 || value.length > max || !B64URL.test(value)) {
    malformed(`${what} is not base64url`);
  }
  return value;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

interface ClientData {
  readonly type: string;
  readonly challenge: string;
  readonly origin: string;
}

function clientDataOf(encoded: string): ClientData {
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(encoded, 'base64url').toString('utf8'));
  } catch {
    malformed('clientDataJSON is not JSON');
  }
  if (!isRecord(parsed)) malformed('clientDataJSON is not an object');
  const { type, challenge, origin } = parsed;
  if (typeof type !== 'string' || typeof origin !== 'string')
    malformed('clientDataJSON lacks type or origin');
  if (typeof challenge !== 'string' || challenge.length > 512 || !B64URL.test(challenge)) {
    malformed('clientDataJSON challenge is malformed');
  }
  return { type, challenge, origin };
}

/**
 * The shape every response must have before anything is looked up: strings where strings go, base64url where
 * binary goes, bounded sizes, `id` equal to `rawId`. Everything after this works on checked values.
 */
function checkEnvelope(response: unknown): {
  id: string;
  inner: Record<string, unknown>;
  clientData: ClientData;
} {
  if (!isRecord(response)) malformed('response is not an object');
  const id = b64urlField(response['id'], 'id', MAX_CREDENTIAL_ID_CHARS);
  const rawId = b64urlField(response['rawId'], 'rawId', MAX_CREDENTIAL_ID_CHARS);
  if (id !== rawId) malformed('id and rawId differ');
  if (response['type'] !== 'public-key') malformed('type is not public-key');
  const inner = response['response'];
  if (!isRecord(inner)) malformed('response.response is not an object');
  const clientData = clientDataOf(b64urlField(inner['clientDataJSON'], 'clientDataJSON'));
  return { id, inner, clientData };
}

/**
 * WebAuthn registration and authentication of security keys as a second factor, on @simplewebauthn/server.
 *
 * Challenges are drawn here (32 random bytes), kept server side with an expiry and consumed by the first
 * response that names them. Origin, RP id hash, challenge, ceremony type, user presence (and verification when
 * required) and the signature are checked; the signature counter is compared only after the signature verified,
 * so that a forged response cannot get a key suspended. See docs/identity-oidc-webauthn.md.
 */
export class WebAuthnService {
  readonly #rpId: string;
  readonly #rpName: string;
  readonly #rpIdHash: Buffer;
  readonly #origins: readonly string[];
  readonly #userVerification: UserVerificationPolicy;
  readonly #attestation: 'none' | 'direct';
  readonly #ttlMs: number;
  readonly #credentials: WebAuthnCredentialStore;
  readonly #challenges: ChallengeStore;
  readonly #audit: AuditRecorder;
  readonly #now: () => number;

  constructor(config: WebAuthnConfig, options: WebAuthnServiceOptions) {
    const invalid = (reason: string): never => {
      throw new WebAuthnError('webauthn_config_invalid', reason);
    };
    if (!/^(?=.{1,253}$)[a-z0-9-]+(?:\.[a-z0-9-]+)*$/.test(config.rpId))
      invalid('rpId must be a domain name');
    if (config.origins.length === 0) invalid('at least one origin is required');
    for (const origin of config.origins) {
      let url: URL | undefined;
      try {
        url = new URL(origin);
      } catch {
        invalid('an origin is not a URL');
      }
      if (url === undefined || url.origin !== origin) invalid('origins must be scheme://host[:port] only');
      // WebAuthn only runs in secure contexts: https, or http://localhost for development.
      else if (url.protocol !== 'https:' && url.hostname !== 'localhost') invalid('origins must be https');
      else if (url.hostname !== config.rpId && !url.hostname.endsWith(`.${config.rpId}`)) {
        invalid('each origin must be the rpId or a subdomain of it');
      }
    }
    const ttl = config.challengeTtlMs ?? 300_000;
    if (!Number.isSafeInteger(ttl) || ttl < 10_000 || ttl > 600_000)
      invalid('challengeTtlMs must be 10 s to 10 min');
    this.#rpId = config.rpId;
    this.#rpName = config.rpName;
    this.#rpIdHash = createHash('sha256').update(config.rpId).digest();
    this.#origins = [...config.origins];
    this.#userVerification = config.userVerification ?? 'preferred';
    this.#attestation = config.attestation ?? 'none';
    this.#ttlMs = ttl;
    this.#credentials = options.credentials;
    this.#now = options.now ?? Date.now;
    this.#challenges = options.challenges ?? new MemoryChallengeStore({ now: this.#now });
    this.#audit = options.audit;
  }

  /** The challenge's bytes; the library sends them base64url-encoded, which is the store's key. */
  async #issueChallenge(kind: CeremonyKind, userId: string): Promise<Uint8Array<ArrayBuffer>> {
    const challenge = new Uint8Array(randomBytes(32));
    const key = Buffer.from(challenge).toString('base64url');
    await this.#challenges.put(key, { kind, userId, expiresAt: this.#now() + this.#ttlMs });
    return challenge;
  }

  /** Options for `navigator.credentials.create()`; the user's existing keys are excluded. */
  async registrationOptions(user: WebAuthnUser): Promise<PublicKeyCredentialCreationOptionsJSON> {
    const existing = await this.#credentials.listForUser(user.id);
    if (existing.length >= MAX_CREDENTIALS_PER_USER) {
      throw new WebAuthnError('webauthn_credential_exists', 'too many credentials');
    }
    const challenge = await this.#issueChallenge('registration', user.id);
    return generateRegistrationOptions({
      rpName: this.#rpName,
      rpID: this.#rpId,
      userName: user.name,
      userID: userHandleOf(user.id),
      userDisplayName: user.displayName ?? user.name,
      challenge,
      timeout: this.#ttlMs,
      attestationType: this.#attestation,
      excludeCredentials: existing.map((c) => ({ id: c.id, transports: [...c.transports] })),
      authenticatorSelection: { residentKey: 'discouraged', userVerification: this.#userVerification },
      supportedAlgorithmIDs: SUPPORTED_ALGORITHMS,
    });
  }

  /** Verifies `navigator.credentials.create()`'s result and stores the new key. Audited. */
  async verifyRegistration(
    user: WebAuthnUser,
    response: unknown,
    options: { name?: string; context?: WebAuthnRequestContext } = {},
  ): Promise<WebAuthnCredential> {
    const started = this.#now();
    try {
      const credential = await this.#register(user, response, options.name ?? 'security key');
      await this.#record('identity.webauthn.register', user.id, 'success', started, options.context, {
        credential: credential.id,
      });
      return credential;
    } catch (err) {
      await this.#recordFailure('identity.webauthn.register', user.id, started, options.context, err);
      throw err;
    }
  }

  async #register(user: WebAuthnUser, response: unknown, name: string): Promise<WebAuthnCredential> {
    if (!NAME_PATTERN.test(name)) malformed('name must be 1 to 64 printable characters');
    const { id, inner, clientData } = checkEnvelope(response);
    const attestationObject = b64urlField(inner['attestationObject'], 'attestationObject');
    await this.#takeChallenge(clientData, 'registration', 'webauthn.create', user.id);
    let authData: ReturnType<typeof parseAuthenticatorData>;
    try {
      const decoded = decodeAttestationObject(Buffer.from(attestationObject, 'base64url'));
      authData = parseAuthenticatorData(decoded.get('authData'));
    } catch (err) {
      throw new WebAuthnError('webauthn_response_malformed', 'attestationObject', { cause: err });
    }
    this.#checkRpIdHash(authData.rpIdHash);
    if (
      authData.credentialID === undefined ||
      Buffer.from(authData.credentialID).toString('base64url') !== id
    ) {
      malformed('credential id differs from the attested one');
    }
    let verified: Awaited<ReturnType<typeof verifyRegistrationResponse>>;
    try {
      verified = await verifyRegistrationResponse({
        response: response as RegistrationResponseJSON,
        expectedChallenge: clientData.challenge,
        expectedOrigin: [...this.#origins],
        expectedRPID: this.#rpId,
        requireUserVerification: this.#userVerification === 'required',
        supportedAlgorithmIDs: SUPPORTED_ALGORITHMS,
      });
    } catch (err) {
      throw new WebAuthnError('webauthn_verification_failed', 'registration', { cause: err });
    }
    if (!verified.verified) throw new WebAuthnError('webauthn_verification_failed', 'registration');
    const info = verified.registrationInfo;
    const transports = Array.isArray(inner['transports'])
      ? inner['transports']
          .filter((t): t is string => typeof t === 'string' && /^[a-z-]{1,32}$/.test(t))
          .slice(0, 8)
      : [];
    const credential: WebAuthnCredential = {
      id: info.credential.id,
      userId: user.id,
      publicKey: Uint8Array.from(info.credential.publicKey),
      counter: info.credential.counter,
      transports,
      aaguid: info.aaguid,
      attestationFormat: info.fmt,
      deviceType: info.credentialDeviceType,
      backedUp: info.credentialBackedUp,
      name,
      createdAt: this.#now(),
      lastUsedAt: null,
      suspendedAt: null,
    };
    await this.#credentials.add(credential);
    return credential;
  }

  /** Options for `navigator.credentials.get()`, listing the user's usable keys. */
  async authenticationOptions(userId: string): Promise<PublicKeyCredentialRequestOptionsJSON> {
    const usable = (await this.#credentials.listForUser(userId)).filter((c) => c.suspendedAt === null);
    if (usable.length === 0) throw new WebAuthnError('webauthn_no_credentials', 'no usable credential');
    const challenge = await this.#issueChallenge('authentication', userId);
    return generateAuthenticationOptions({
      rpID: this.#rpId,
      challenge,
      timeout: this.#ttlMs,
      userVerification: this.#userVerification,
      allowCredentials: usable.map((c) => ({ id: c.id, transports: [...c.transports] })),
    });
  }

  /**
   * Verifies `navigator.credentials.get()`'s result for `userId` (known from the first factor). On success the
   * counter is advanced; a counter that did not increase suspends the key (possible clone). Audited.
   */
  async verifyAuthentication(
    userId: string,
    response: unknown,
    context?: WebAuthnRequestContext,
  ): Promise<WebAuthnAuthenticationResult> {
    const started = this.#now();
    try {
      const result = await this.#authenticate(userId, response, context, started);
      await this.#record('identity.webauthn.authenticate', userId, 'success', started, context, {
        credential: result.credentialId,
      });
      return result;
    } catch (err) {
      if (!(err instanceof WebAuthnError && err.code === 'webauthn_counter_regression')) {
        await this.#recordFailure('identity.webauthn.authenticate', userId, started, context, err);
      }
      throw err;
    }
  }

  async #authenticate(
    userId: string,
    response: unknown,
    context: WebAuthnRequestContext | undefined,
    started: number,
  ): Promise<WebAuthnAuthenticationResult> {
    const { id, inner, clientData } = checkEnvelope(response);
    const authenticatorData = b64urlField(inner['authenticatorData'], 'authenticatorData');
    b64urlField(inner['signature'], 'signature');
    const userHandle = inner['userHandle'];
    if (userHandle !== undefined && userHandle !== null && userHandle !== '') {
      // WebAuthn §7.2 step 6: the user is known from the first factor, so a handle, if sent, must be theirs.
      const expected = userHandleOf(userId).toString('base64url');
      if (
        !constantTimeEqual(Buffer.from(b64urlField(userHandle, 'userHandle', 128)), Buffer.from(expected))
      ) {
        throw new WebAuthnError('webauthn_verification_failed', 'userHandle');
      }
    }
    await this.#takeChallenge(clientData, 'authentication', 'webauthn.get', userId);
    const credential = await this.#credentials.get(id);
    if (credential === undefined || credential.userId !== userId) {
      throw new WebAuthnError('webauthn_credential_unknown', 'credential not registered for the user');
    }
    if (credential.suspendedAt !== null)
      throw new WebAuthnError('webauthn_credential_suspended', 'suspended');
    let parsed: ReturnType<typeof parseAuthenticatorData>;
    try {
      parsed = parseAuthenticatorData(Buffer.from(authenticatorData, 'base64url'));
    } catch (err) {
      throw new WebAuthnError('webauthn_response_malformed', 'authenticatorData', { cause: err });
    }
    this.#checkRpIdHash(parsed.rpIdHash);
    let verified: Awaited<ReturnType<typeof verifyAuthenticationResponse>>;
    try {
      verified = await verifyAuthenticationResponse({
        response: response as AuthenticationResponseJSON,
        expectedChallenge: clientData.challenge,
        expectedOrigin: [...this.#origins],
        expectedRPID: this.#rpId,
        // Counter 0 here: the library would compare before checking the signature; Warden compares after.
        credential: { id: credential.id, publicKey: Uint8Array.from(credential.publicKey), counter: 0 },
        requireUserVerification: this.#userVerification === 'required',
      });
    } catch (err) {
      throw new WebAuthnError('webauthn_verification_failed', 'assertion', { cause: err });
    }
    if (!verified.verified) throw new WebAuthnError('webauthn_verification_failed', 'signature');
    const { newCounter, userVerified } = verified.authenticationInfo;
    const now = this.#now();
    if ((newCounter > 0 || credential.counter > 0) && newCounter <= credential.counter) {
      await this.#credentials.suspend(credential.id, now);
      await this.#record(
        'identity.webauthn.authenticate',
        userId,
        'denied',
        started,
        context,
        {
          credential: credential.id,
          storedCounter: credential.counter,
          receivedCounter: newCounter,
          suspected: 'cloned-authenticator',
        },
        'webauthn_counter_regression',
      );
      throw new WebAuthnError(
        'webauthn_counter_regression',
        `counter ${newCounter} <= ${credential.counter}`,
      );
    }
    if (!(await this.#credentials.recordUse(credential.id, credential.counter, newCounter, now))) {
      throw new WebAuthnError('webauthn_verification_failed', 'credential changed concurrently');
    }
    return {
      userId,
      credentialId: credential.id,
      userVerified,
      amr: userVerified ? ['hwk', 'user'] : ['hwk'],
      mfaAt: now,
    };
  }

  listCredentials(userId: string): Promise<WebAuthnCredential[]> {
    return this.#credentials.listForUser(userId);
  }

  /** Removes a key of the user (also how a suspended key is cleared: remove, then register again). Audited. */
  async removeCredential(
    userId: string,
    credentialId: string,
    context?: WebAuthnRequestContext,
  ): Promise<boolean> {
    const started = this.#now();
    const removed = await this.#credentials.remove(userId, credentialId);
    await this.#record(
      'identity.webauthn.remove',
      userId,
      removed ? 'success' : 'failure',
      started,
      context,
      {
        credential: credentialId.slice(0, MAX_CREDENTIAL_ID_CHARS),
      },
    );
    return removed;
  }

  /**
   * Consumes the challenge the client data names. It must have been issued for this ceremony and this user; the
   * type and origin are checked here so that the errors say which check failed (the library checks them again).
   */
  async #takeChallenge(
    clientData: ClientData,
    kind: CeremonyKind,
    type: string,
    userId: string,
  ): Promise<void> {
    const pending = await this.#challenges.take(clientData.challenge, this.#now());
    if (pending === undefined)
      throw new WebAuthnError('webauthn_challenge_invalid', 'unknown, used or expired');
    if (pending.kind !== kind || !constantTimeEqual(Buffer.from(pending.userId), Buffer.from(userId))) {
      throw new WebAuthnError('webauthn_challenge_invalid', 'issued for another ceremony or user');
    }
    if (clientData.type !== type) malformed('clientDataJSON type');
    if (!this.#origins.includes(clientData.origin))
      throw new WebAuthnError('webauthn_origin_mismatch', 'origin');
  }

  #checkRpIdHash(rpIdHash: Uint8Array): void {
    if (!constantTimeEqual(rpIdHash, this.#rpIdHash))
      throw new WebAuthnError('webauthn_rpid_mismatch', 'rpIdHash');
  }

  async #recordFailure(
    action: string,
    userId: string,
    started: number,
    context: WebAuthnRequestContext | undefined,
    err: unknown,
  ): Promise<void> {
    const reason = err instanceof WebAuthnError ? `${err.code}:${err.reason}` : 'internal_error';
    await this.#record(action, userId, 'failure', started, context, undefined, reason);
  }

  async #record(
    action: string,
    userId: string,
    outcome: 'success' | 'failure' | 'denied',
    started: number,
    context: WebAuthnRequestContext | undefined,
    details?: Record<string, string | number>,
    reason?: string,
  ): Promise<void> {
    await this.#audit.record({
      action,
      principal: { id: userId, authMethod: 'webauthn' },
      resource: `identity:${userId}`,
      outcome,
      ...(reason === undefined ? {} : { reason }),
      ...(context?.requestId === undefined ? {} : { requestId: context.requestId }),
      ...(context?.sourceIp === undefined ? {} : { sourceIp: context.sourceIp }),
      ...(context?.userAgent === undefined ? {} : { userAgent: context.userAgent }),
      latencyMs: Math.max(0, this.#now() - started),
      ...(details === undefined ? {} : { details }),
    });
  }
}

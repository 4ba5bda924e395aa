import { MacKey } from '../crypto/index.ts';
import {
  Directory,
  IDENTITY_MIGRATIONS,
  IDENTITY_SYSTEM_PRINCIPAL,
  IdentityService,
  kmsSecretSealer,
} from '../identity/index.ts';
import type { IdentityDB } from '../identity/index.ts';
import type { AuditRecorder } from '../audit/index.ts';
import { KmsSealedError } from '../kms/index.ts';
import { lateBound } from './late-bound.ts';
import type { KmsService } from '../kms/index.ts';
import type { Store } from '../store/index.ts';

/** Warden's own identity keys: token signing (rotated every 90 days, JWKS keeps older versions), keyed hashes, TOTP seeds. */
export const TOKEN_SIGNING_KEY = 'warden.oauth-signing';
const IDENTITY_MAC_KEY = 'warden.identity-mac';
const IDENTITY_SECRETS_KEY = 'warden.identity-secrets';

export interface IdentityRuntimeOptions {
  readonly store: Store<IdentityDB>;
  readonly kms: KmsService;
  readonly audit: AuditRecorder;
  readonly bootstrapToken: string;
  /** Security keys live outside the directory: see IdentityServiceOptions.otherMfaFactors. */
  readonly otherMfaFactors?: (principalId: string) => Promise<boolean>;
}

/**
 * The identity service needs the KMS (its signing key, its keyed-hash key), so with a sealed root it can only
 * open after the unseal. Routes are registered at start-up against `current()`: calls before the service is
 * open answer 503 `sealed`, like the KMS itself.
 */
export class IdentityRuntime {
  readonly #options: IdentityRuntimeOptions;
  #service: IdentityService | undefined;
  #opening: Promise<IdentityService> | undefined;
  #directory: Promise<Directory> | undefined;

  constructor(options: IdentityRuntimeOptions) {
    this.#options = options;
  }

  get ready(): IdentityService | undefined {
    return this.#service;
  }

  /** The service, or 503 `sealed` while it cannot be opened yet. */
  current(): IdentityService {
    if (this.#service === undefined) throw new KmsSealedError();
    return this.#service;
  }

  /** Opens the service once the KMS can be used; resolves the same instance for every caller. */
  open(issuer: string): Promise<IdentityService> {
    if (this.#service !== undefined) return Promise.resolve(this.#service);
    this.#opening ??= this.#open(issuer).finally(() => {
      this.#opening = undefined;
    });
    return this.#opening;
  }

  async #open(issuer: string): Promise<IdentityService> {
    const { kms, store, audit, bootstrapToken } = this.#options;
    await kms.ensureSystemKey({ name: TOKEN_SIGNING_KEY, type: 'ecdsa-p256' });
    await kms.ensureSystemKey({ name: IDENTITY_MAC_KEY, type: 'hmac-sha256', rotationPeriodDays: 0 });
    await kms.ensureSystemKey({ name: IDENTITY_SECRETS_KEY, type: 'aes256-gcm' });
    const macKey = MacKey.fromBytes(await kms.deriveAsSystem(IDENTITY_MAC_KEY, 'warden identity mac v1'));
    this.#service = await IdentityService.open({
      store,
      kms,
      signingKeyName: TOKEN_SIGNING_KEY,
      macKey,
      sealer: kmsSecretSealer(kms, IDENTITY_SYSTEM_PRINCIPAL, IDENTITY_SECRETS_KEY),
      audit,
      issuer,
      bootstrapToken,
      ...(this.#options.otherMfaFactors === undefined
        ? {}
        : { otherMfaFactors: this.#options.otherMfaFactors }),
    });
    return this.#service;
  }

  /**
   * True once the bootstrap token has been redeemed. Answered from the store alone, without the KMS: a sealed
   * server must refuse a redeemed token too, or its leftover file would be an administrator's credential after
   * every restart until the unseal.
   */
  async bootstrapRedeemed(): Promise<boolean> {
    if (this.#service !== undefined) return this.#service.isBootstrapRedeemed();
    this.#directory ??= this.#options.store.migrate(IDENTITY_MIGRATIONS).then(
      () => new Directory(this.#options.store),
      (err: unknown) => {
        this.#directory = undefined;
        throw err;
      },
    );
    return (await (await this.#directory).getMeta('bootstrap')) !== undefined;
  }

  /** A stand-in with the service's shape for route modules registered before it opens. */
  proxy(): IdentityService {
    return lateBound(() => this.#service);
  }
}

/**
 * The PKCS#11 root of trust: the KMS root key is an AES-256 key generated inside an HSM (sensitive,
 * non-extractable, a token object), and every key version's material is wrapped by it with CKM_AES_GCM inside
 * the HSM. Randomness comes from the HSM's C_GenerateRandom. The same token can also hold *resident* keys (AES,
 * HMAC, ECDSA) that never leave it; destroying one is crypto-shredding.
 *
 * Wrapped format (the same for `wrap` and `residentEncrypt`):
 *
 *     0x01 (format version) || IV (12 bytes, from C_GenerateRandom) || AES-256-GCM ciphertext || tag (16 bytes)
 *
 * with GCM's AAD = 0x01 || aad, so the caller's context and the format version are both authenticated.
 *
 * One session per instance, logged in as the user while unsealed. PKCS#11 sessions run one operation at a time,
 * and pkcs11js's `*Async` calls run on libuv's thread pool, so every use of the session goes through a FIFO mutex.
 * The PIN is used for `C_Login` and not kept; it never appears in an error.
 */
import { createHash } from 'node:crypto';
import { endianness } from 'node:os';
import pkcs11js from 'pkcs11js';
import {
  DecryptionError,
  InvalidInputError,
  MAX_RANDOM_BYTES,
  ecdsaP1363ToDer,
  wipe,
  type EcdsaCurve,
} from '../../crypto/index.ts';
import { SealedError, type RootOfTrust, type RootStatus } from './types.ts';
import { DEFAULT_ROOT_KEY_LABEL, type Pkcs11RootConfig } from './pkcs11/config.ts';
import { CURVE_HASH, curveOfEcParams, ecParamsOf, ecPointOf, signatureBytes, spkiOf } from './pkcs11/ec.ts';
import { HsmError, ck, ckAsync } from './pkcs11/errors.ts';
import {
  acquireModule,
  claimToken,
  findTokenSlot,
  releaseModule,
  releaseToken,
  type LoadedModule,
} from './pkcs11/module.ts';
import { Mutex } from './pkcs11/mutex.ts';

export { DEFAULT_ROOT_KEY_LABEL, pkcs11ConfigFromEnv } from './pkcs11/config.ts';
export type { Pkcs11RootConfig } from './pkcs11/config.ts';
export { HsmError } from './pkcs11/errors.ts';
export type { HsmErrorCode } from './pkcs11/errors.ts';

type Handle = pkcs11js.Handle;
type Session = Handle;
type P11 = pkcs11js.PKCS11;

const FORMAT_VERSION = 0x01;
const IV_BYTES = 12;
const TAG_BYTES = 16;
/** Bytes `wrap`/`residentEncrypt` add to the plaintext: version, IV and tag. */
export const PKCS11_WRAP_OVERHEAD = 1 + IV_BYTES + TAG_BYTES;
/** Upper bound of one `wrap`/`residentEncrypt` plaintext: key material and small secrets, not bulk data. */
export const PKCS11_MAX_PLAINTEXT_BYTES = 64 * 1024;
const MAX_LABEL_BYTES = 128;
/** Some HSMs cap one C_GenerateRandom call; larger requests are split. */
const RANDOM_CHUNK_BYTES = 4096;
const HMAC_SHA256_BYTES = 32;

/**
 * Results meaning the session or the login is gone (HSM restarted, token removed, library finalised, logged out
 * behind our back): the instance drops its session and reports sealed until an operator unseals it again.
 */
const SESSION_LOST = new Set([
  'CKR_USER_NOT_LOGGED_IN',
  'CKR_SESSION_HANDLE_INVALID',
  'CKR_SESSION_CLOSED',
  'CKR_TOKEN_NOT_PRESENT',
  'CKR_TOKEN_NOT_RECOGNIZED',
  'CKR_DEVICE_REMOVED',
  'CKR_CRYPTOKI_NOT_INITIALIZED',
]);
/** A cached object handle that no longer names an object (destroyed by another process, HSM failover). */
const STALE_HANDLE = new Set(['CKR_KEY_HANDLE_INVALID', 'CKR_OBJECT_HANDLE_INVALID']);

function ckrIn(set: ReadonlySet<string>, error: unknown): boolean {
  return error instanceof HsmError && error.ckr !== undefined && set.has(error.ckr);
}

export type ResidentKeyType = 'aes256' | 'ecdsa-p256' | 'ecdsa-p384' | 'hmac-sha256';
export const RESIDENT_KEY_TYPES: readonly ResidentKeyType[] = [
  'aes256',
  'ecdsa-p256',
  'ecdsa-p384',
  'hmac-sha256',
];

interface ResidentKey {
  readonly type: ResidentKeyType;
  /** The secret key, or the private key of an ECDSA pair. */
  readonly handle: Handle;
  readonly publicKey?: Handle;
  readonly curve?: EcdsaCurve;
}

/** Security-relevant attributes of a secret key, as the HSM reports them. */
export interface Pkcs11KeyAttributes {
  readonly label: string;
  readonly valueLen: number;
  readonly token: boolean;
  readonly private: boolean;
  readonly sensitive: boolean;
  readonly alwaysSensitive: boolean;
  readonly extractable: boolean;
  readonly neverExtractable: boolean;
  /** Generated on the token (not imported). */
  readonly local: boolean;
  readonly encrypt: boolean;
  readonly decrypt: boolean;
  readonly wrap: boolean;
  readonly unwrap: boolean;
}

// ---- attribute helpers -------------------------------------------------------------------------------------

const LITTLE_ENDIAN = endianness() === 'LE';

/** A CK_ULONG attribute value (native size and byte order of the module). */
function ulongOf(value: Buffer): number {
  if (value.byteLength === 8) {
    return Number(LITTLE_ENDIAN ? value.readBigUInt64LE() : value.readBigUInt64BE());
  }
  if (value.byteLength === 4) return LITTLE_ENDIAN ? value.readUInt32LE() : value.readUInt32BE();
  throw new HsmError('hsm_error', `unexpected CK_ULONG attribute of ${value.byteLength} bytes`);
}

function boolOf(value: Buffer): boolean {
  return value.byteLength === 1 && value[0] !== 0;
}

function readAttributes(p11: P11, session: Session, object: Handle, types: readonly number[]): Buffer[] {
  const result = ck('C_GetAttributeValue', () =>
    p11.C_GetAttributeValue(
      session,
      object,
      types.map((type) => ({ type })),
    ),
  );
  return types.map((type) => {
    const value = result.find((attribute) => attribute.type === type)?.value;
    if (value === undefined)
      throw new HsmError('hsm_error', 'C_GetAttributeValue returned too few attributes');
    return value;
  });
}

function findObjects(p11: P11, session: Session, template: pkcs11js.Template): Handle[] {
  ck('C_FindObjectsInit', () => {
    p11.C_FindObjectsInit(session, template);
  });
  const found: Handle[] = [];
  try {
    for (;;) {
      const batch = ck('C_FindObjects', () => p11.C_FindObjects(session, 64));
      if (batch.length === 0) break;
      found.push(...batch);
      if (found.length > 4096) throw new HsmError('hsm_error', 'too many objects match');
    }
  } finally {
    ck('C_FindObjectsFinal', () => {
      p11.C_FindObjectsFinal(session);
    });
  }
  return found;
}

function byLabel(label: string, objectClass?: number): pkcs11js.Template {
  const template: pkcs11js.Template = [{ type: pkcs11js.CKA_LABEL, value: label }];
  if (objectClass !== undefined) template.push({ type: pkcs11js.CKA_CLASS, value: objectClass });
  return template;
}

function gcmMechanism(iv: Buffer, aad: Uint8Array): pkcs11js.Mechanism {
  const parameter: pkcs11js.GcmParams = {
    // CK_GCM_PARAMS as in PKCS#11 2.40 (with ulIvBits), the layout SoftHSM 2.6 and current HSMs expect.
    type: pkcs11js.CK_PARAMS_GCM,
    iv,
    ivBits: IV_BYTES * 8,
    aad: Buffer.concat([Uint8Array.of(FORMAT_VERSION), aad]),
    tagBits: TAG_BYTES * 8,
  };
  return { mechanism: pkcs11js.CKM_AES_GCM, parameter };
}

function checkPlaintext(data: Uint8Array, what: string): void {
  if (!(data instanceof Uint8Array)) throw new InvalidInputError(`${what} must be bytes`);
  if (data.byteLength === 0 || data.byteLength > PKCS11_MAX_PLAINTEXT_BYTES) {
    throw new InvalidInputError(`${what} must be 1 to ${PKCS11_MAX_PLAINTEXT_BYTES} bytes`);
  }
}

function checkBytes(data: Uint8Array, what: string): void {
  if (!(data instanceof Uint8Array)) throw new InvalidInputError(`${what} must be bytes`);
}

// ---- templates ---------------------------------------------------------------------------------------------

/** Attributes every Warden key gets: a private token object that never leaves the HSM in the clear. */
function protectedKey(label: string, id: Buffer): pkcs11js.Template {
  return [
    { type: pkcs11js.CKA_TOKEN, value: true },
    { type: pkcs11js.CKA_PRIVATE, value: true },
    { type: pkcs11js.CKA_SENSITIVE, value: true },
    { type: pkcs11js.CKA_EXTRACTABLE, value: false },
    { type: pkcs11js.CKA_LABEL, value: label },
    { type: pkcs11js.CKA_ID, value: id },
  ];
}

function secretKeyTemplate(
  label: string,
  id: Buffer,
  keyType: number,
  usage: { encrypt: boolean; sign: boolean },
): pkcs11js.Template {
  return [
    { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
    { type: pkcs11js.CKA_KEY_TYPE, value: keyType },
    { type: pkcs11js.CKA_VALUE_LEN, value: 32 },
    ...protectedKey(label, id),
    { type: pkcs11js.CKA_ENCRYPT, value: usage.encrypt },
    { type: pkcs11js.CKA_DECRYPT, value: usage.encrypt },
    { type: pkcs11js.CKA_SIGN, value: usage.sign },
    { type: pkcs11js.CKA_VERIFY, value: usage.sign },
    { type: pkcs11js.CKA_WRAP, value: false },
    { type: pkcs11js.CKA_UNWRAP, value: false },
    { type: pkcs11js.CKA_DERIVE, value: false },
  ];
}

// ---- the root of trust -------------------------------------------------------------------------------------

export class Pkcs11RootOfTrust implements RootOfTrust {
  readonly kind = 'pkcs11';
  readonly #module: LoadedModule;
  readonly #slot: Handle;
  readonly #tokenLabel: string;
  readonly #rootKeyLabel: string;
  readonly #lock = new Mutex();
  #session: Session | undefined;
  #closed = false;
  /** Last known: private objects are invisible while logged out. */
  #initialized = false;
  #rootKey: Handle | undefined;
  readonly #resident = new Map<string, ResidentKey>();

  private constructor(module: LoadedModule, slot: Handle, tokenLabel: string, rootKeyLabel: string) {
    this.#module = module;
    this.#slot = slot;
    this.#tokenLabel = tokenLabel;
    this.#rootKeyLabel = rootKeyLabel;
  }

  /**
   * Loads the module (once per process), finds the token by label and, given a PIN, opens an RW session and
   * logs in. Without a PIN the root starts sealed: `unseal(pin)` logs in later.
   */
  static async open(config: Pkcs11RootConfig): Promise<Pkcs11RootOfTrust> {
    const { modulePath, tokenLabel, pin } = config;
    const rootKeyLabel = config.rootKeyLabel ?? DEFAULT_ROOT_KEY_LABEL;
    if (typeof modulePath !== 'string' || modulePath === '') {
      throw new HsmError('hsm_config', 'the PKCS#11 module path is empty');
    }
    if (typeof tokenLabel !== 'string' || tokenLabel === '' || Buffer.byteLength(tokenLabel) > 32) {
      throw new HsmError('hsm_config', 'the PKCS#11 token label must be 1 to 32 bytes');
    }
    checkLabel(rootKeyLabel, 'the root key label');
    const module = acquireModule(modulePath);
    let root: Pkcs11RootOfTrust | undefined;
    try {
      const slot = findTokenSlot(module, tokenLabel);
      if (!claimToken(module, slot)) {
        throw new HsmError('hsm_config', `PKCS#11 token "${tokenLabel}" is already open in this process`);
      }
      root = new Pkcs11RootOfTrust(module, slot, tokenLabel, rootKeyLabel);
    } catch (error) {
      releaseModule(module);
      throw error;
    }
    if (pin !== undefined) {
      try {
        await root.unseal(pin);
      } catch (error) {
        await root.close();
        throw error;
      }
    }
    return root;
  }

  get tokenLabel(): string {
    return this.#tokenLabel;
  }

  get rootKeyLabel(): string {
    return this.#rootKeyLabel;
  }

  status(): RootStatus {
    return { kind: 'pkcs11', initialized: this.#initialized, sealed: this.#session === undefined };
  }

  /** Opens a session and logs in as the user; a no-op if already unsealed. A wrong PIN throws `HsmError`. */
  unseal(pin: string): Promise<void> {
    return this.#lock.run(() => {
      this.#requireOpen();
      if (this.#session !== undefined) return;
      if (typeof pin !== 'string' || pin === '') throw new HsmError('hsm_pin_incorrect', 'the PIN is empty');
      const p11 = this.#module.p11;
      const session = ck('C_OpenSession', () =>
        p11.C_OpenSession(this.#slot, pkcs11js.CKF_RW_SESSION | pkcs11js.CKF_SERIAL_SESSION),
      );
      try {
        ck('C_Login', () => {
          p11.C_Login(session, pkcs11js.CKU_USER, pin);
        });
        this.#rootKey = this.#findRootKey(p11, session);
        this.#initialized = this.#rootKey !== undefined;
      } catch (error) {
        closeQuietly(p11, session, true);
        throw error;
      }
      this.#session = session;
    });
  }

  /** Logs out and closes the session; every operation then throws `SealedError` until `unseal`. */
  seal(): Promise<void> {
    return this.#lock.run(() => {
      this.#dropSession();
    });
  }

  /** Seals, releases the token and finalises the module when no other instance uses it. Idempotent. */
  close(): Promise<void> {
    return this.#lock.run(() => {
      if (this.#closed) return;
      this.#dropSession();
      this.#closed = true;
      releaseToken(this.#module, this.#slot);
      releaseModule(this.#module);
    });
  }

  /** Generates the root key inside the HSM. Refused if a key with the root key's label exists. */
  initialize(): Promise<void> {
    return this.#withSession(async (p11, session) => {
      if (this.#findRootKey(p11, session) !== undefined) {
        throw new HsmError('hsm_key_exists', `the root key "${this.#rootKeyLabel}" already exists`);
      }
      const id = this.#randomBytes(p11, session, 16);
      const handle = await ckAsync('C_GenerateKey', () =>
        p11.C_GenerateKeyAsync(
          session,
          { mechanism: pkcs11js.CKM_AES_KEY_GEN },
          secretKeyTemplate(this.#rootKeyLabel, id, pkcs11js.CKK_AES, { encrypt: true, sign: false }),
        ),
      );
      // Another process may have initialised concurrently: keep exactly one root key.
      const all = findObjects(p11, session, byLabel(this.#rootKeyLabel, pkcs11js.CKO_SECRET_KEY));
      if (all.length !== 1) {
        ck('C_DestroyObject', () => {
          p11.C_DestroyObject(session, handle);
        });
        throw new HsmError('hsm_key_exists', `the root key "${this.#rootKeyLabel}" already exists`);
      }
      this.#rootKey = this.#findRootKey(p11, session);
      this.#initialized = this.#rootKey !== undefined;
    });
  }

  /** The root key's attributes as the HSM reports them (for `operator status` and audits). */
  rootKeyAttributes(): Promise<Pkcs11KeyAttributes> {
    return this.#withSession((p11, session) =>
      Promise.resolve(keyAttributes(p11, session, this.#requireRootKey(p11, session))),
    );
  }

  async wrap(material: Uint8Array, aad: Uint8Array): Promise<Buffer> {
    checkPlaintext(material, 'key material');
    checkBytes(aad, 'aad');
    return await this.#withSession((p11, session) =>
      this.#withKey(
        () => this.#requireRootKey(p11, session),
        () => (this.#rootKey = undefined),
        (key) => this.#gcmEncrypt(p11, session, key, material, aad),
      ),
    );
  }

  async unwrap(wrapped: Uint8Array, aad: Uint8Array): Promise<Buffer> {
    checkBytes(wrapped, 'wrapped material');
    checkBytes(aad, 'aad');
    return await this.#withSession((p11, session) =>
      this.#withKey(
        () => this.#requireRootKey(p11, session),
        () => (this.#rootKey = undefined),
        (key) => this.#gcmDecrypt(p11, session, key, wrapped, aad),
      ),
    );
  }

  /** `length` bytes from the HSM's C_GenerateRandom. */
  async randomBytes(length: number): Promise<Buffer> {
    if (!Number.isSafeInteger(length) || length <= 0 || length > MAX_RANDOM_BYTES) {
      throw new InvalidInputError(`random length must be an integer from 1 to ${MAX_RANDOM_BYTES}`);
    }
    return await this.#withSession((p11, session) =>
      Promise.resolve(this.#randomBytes(p11, session, length)),
    );
  }

  // ---- resident keys ---------------------------------------------------------------------------------------

  /**
   * Generates a key that lives only in the HSM: a private, sensitive, non-extractable token object labelled
   * `label` (for ECDSA, a private and a public key object sharing the label and a random CKA_ID).
   */
  async generateResidentKey(type: ResidentKeyType, label: string): Promise<void> {
    if (!RESIDENT_KEY_TYPES.includes(type)) throw new InvalidInputError('unknown resident key type');
    this.#checkResidentLabel(label);
    await this.#withSession(async (p11, session) => {
      if (findObjects(p11, session, byLabel(label)).length > 0) {
        throw new HsmError('hsm_key_exists', `a key labelled "${label}" already exists on the token`);
      }
      const id = this.#randomBytes(p11, session, 16);
      let created: Handle[];
      let objectClass: number;
      if (type === 'aes256' || type === 'hmac-sha256') {
        const aes = type === 'aes256';
        const template = secretKeyTemplate(label, id, aes ? pkcs11js.CKK_AES : pkcs11js.CKK_GENERIC_SECRET, {
          encrypt: aes,
          sign: !aes,
        });
        const mechanism = aes ? pkcs11js.CKM_AES_KEY_GEN : pkcs11js.CKM_GENERIC_SECRET_KEY_GEN;
        created = [
          await ckAsync('C_GenerateKey', () => p11.C_GenerateKeyAsync(session, { mechanism }, template)),
        ];
        objectClass = pkcs11js.CKO_SECRET_KEY;
      } else {
        const curve: EcdsaCurve = type === 'ecdsa-p256' ? 'P-256' : 'P-384';
        const publicTemplate: pkcs11js.Template = [
          { type: pkcs11js.CKA_TOKEN, value: true },
          { type: pkcs11js.CKA_PRIVATE, value: false },
          { type: pkcs11js.CKA_LABEL, value: label },
          { type: pkcs11js.CKA_ID, value: id },
          { type: pkcs11js.CKA_EC_PARAMS, value: ecParamsOf(curve) },
          { type: pkcs11js.CKA_VERIFY, value: true },
          { type: pkcs11js.CKA_ENCRYPT, value: false },
          { type: pkcs11js.CKA_WRAP, value: false },
          { type: pkcs11js.CKA_DERIVE, value: false },
        ];
        const privateTemplate: pkcs11js.Template = [
          ...protectedKey(label, id),
          { type: pkcs11js.CKA_SIGN, value: true },
          { type: pkcs11js.CKA_DECRYPT, value: false },
          { type: pkcs11js.CKA_UNWRAP, value: false },
          { type: pkcs11js.CKA_DERIVE, value: false },
        ];
        const pair = await ckAsync('C_GenerateKeyPair', () =>
          p11.C_GenerateKeyPairAsync(
            session,
            { mechanism: pkcs11js.CKM_EC_KEY_PAIR_GEN },
            publicTemplate,
            privateTemplate,
          ),
        );
        created = [pair.privateKey, pair.publicKey];
        objectClass = pkcs11js.CKO_PRIVATE_KEY;
      }
      // Another process may have used the label concurrently: keep exactly one.
      if (findObjects(p11, session, byLabel(label, objectClass)).length !== 1) {
        for (const handle of created) {
          ck('C_DestroyObject', () => {
            p11.C_DestroyObject(session, handle);
          });
        }
        throw new HsmError('hsm_key_exists', `a key labelled "${label}" already exists on the token`);
      }
      this.#resident.delete(label);
    });
  }

  /** The type of the resident key labelled `label`, or undefined if there is none. */
  async residentKeyType(label: string): Promise<ResidentKeyType | undefined> {
    this.#checkResidentLabel(label);
    return await this.#withSession((p11, session) => {
      try {
        return Promise.resolve(this.#residentKey(p11, session, label).type);
      } catch (error) {
        if (error instanceof HsmError && error.code === 'hsm_key_not_found')
          return Promise.resolve(undefined);
        throw error;
      }
    });
  }

  /**
   * ECDSA signature, DER-encoded (X9.62 SEQUENCE { r, s }). The message is hashed here (SHA-256 for P-256,
   * SHA-384 for P-384) and the digest signed with CKM_ECDSA inside the HSM; the HSM's raw r || s is converted.
   */
  async residentSign(label: string, data: Uint8Array): Promise<Buffer> {
    this.#checkResidentLabel(label);
    checkBytes(data, 'data');
    return await this.#withResident(label, async (p11, session, key) => {
      const curve = this.#requireType(key, label, 'sign', 'ecdsa-p256', 'ecdsa-p384').curve;
      if (curve === undefined) throw new HsmError('hsm_error', 'ECDSA key without a curve');
      const digest = createHash(CURVE_HASH[curve]).update(data).digest();
      ck('C_SignInit', () => {
        p11.C_SignInit(session, { mechanism: pkcs11js.CKM_ECDSA }, key.handle);
      });
      const raw = await ckAsync('C_Sign', () =>
        p11.C_SignAsync(session, digest, Buffer.alloc(signatureBytes(curve))),
      );
      return ecdsaP1363ToDer(raw, curve);
    });
  }

  /** SubjectPublicKeyInfo DER of a resident ECDSA key. */
  async residentPublicKey(label: string): Promise<Buffer> {
    this.#checkResidentLabel(label);
    return await this.#withResident(label, (p11, session, key) => {
      const { curve, publicKey } = this.#requireType(
        key,
        label,
        'export a public key',
        'ecdsa-p256',
        'ecdsa-p384',
      );
      if (curve === undefined || publicKey === undefined) {
        throw new HsmError('hsm_key_not_found', `the public key of "${label}" is not on the token`);
      }
      const [point] = readAttributes(p11, session, publicKey, [pkcs11js.CKA_EC_POINT]);
      return Promise.resolve(spkiOf(ecPointOf(point ?? Buffer.alloc(0), curve), curve));
    });
  }

  /** AES-256-GCM inside the HSM with a resident AES key; same format and AAD binding as `wrap`. */
  async residentEncrypt(label: string, plaintext: Uint8Array, aad: Uint8Array): Promise<Buffer> {
    this.#checkResidentLabel(label);
    checkPlaintext(plaintext, 'plaintext');
    checkBytes(aad, 'aad');
    return await this.#withResident(label, (p11, session, key) => {
      this.#requireType(key, label, 'encrypt', 'aes256');
      return this.#gcmEncrypt(p11, session, key.handle, plaintext, aad);
    });
  }

  /** Reverses `residentEncrypt`; every failure of the ciphertext is the one `DecryptionError`. */
  async residentDecrypt(label: string, ciphertext: Uint8Array, aad: Uint8Array): Promise<Buffer> {
    this.#checkResidentLabel(label);
    checkBytes(ciphertext, 'ciphertext');
    checkBytes(aad, 'aad');
    return await this.#withResident(label, (p11, session, key) => {
      this.#requireType(key, label, 'decrypt', 'aes256');
      return this.#gcmDecrypt(p11, session, key.handle, ciphertext, aad);
    });
  }

  /** HMAC-SHA-256 (CKM_SHA256_HMAC) with a resident HMAC key: 32 bytes. */
  async residentHmac(label: string, data: Uint8Array): Promise<Buffer> {
    this.#checkResidentLabel(label);
    checkBytes(data, 'data');
    return await this.#withResident(label, async (p11, session, key) => {
      this.#requireType(key, label, 'compute a MAC', 'hmac-sha256');
      const input = Buffer.from(data);
      ck('C_SignInit', () => {
        p11.C_SignInit(session, { mechanism: pkcs11js.CKM_SHA256_HMAC }, key.handle);
      });
      const tag = await ckAsync('C_Sign', () =>
        p11.C_SignAsync(session, input, Buffer.alloc(HMAC_SHA256_BYTES)),
      );
      if (tag.byteLength !== HMAC_SHA256_BYTES) throw new HsmError('hsm_error', 'HMAC of unexpected length');
      return tag;
    });
  }

  /**
   * Destroys every object labelled `label` (C_DestroyObject): the key is gone from the token, and whatever only
   * it protected is unrecoverable (crypto-shredding). Backups of the token are the operator's to handle.
   */
  async destroyResidentKey(label: string): Promise<void> {
    this.#checkResidentLabel(label);
    await this.#withSession((p11, session) => {
      this.#resident.delete(label);
      const objects = findObjects(p11, session, byLabel(label));
      if (objects.length === 0)
        throw new HsmError('hsm_key_not_found', `no key labelled "${label}" on the token`);
      for (const object of objects) {
        ck('C_DestroyObject', () => {
          p11.C_DestroyObject(session, object);
        });
      }
      return Promise.resolve();
    });
  }

  // ---- internals -------------------------------------------------------------------------------------------

  #requireOpen(): void {
    if (this.#closed) throw new HsmError('hsm_closed', 'the PKCS#11 root of trust is closed');
  }

  /** Runs `task` under the session lock while unsealed; a lost session or login becomes `SealedError`. */
  #withSession<T>(task: (p11: P11, session: Session) => Promise<T>): Promise<T> {
    return this.#lock.run(async () => {
      this.#requireOpen();
      const session = this.#session;
      if (session === undefined) throw new SealedError();
      try {
        return await task(this.#module.p11, session);
      } catch (error) {
        if (ckrIn(SESSION_LOST, error)) {
          this.#dropSession();
          throw new SealedError();
        }
        throw error;
      }
    });
  }

  /** Runs `use` with a cached handle; if the handle went stale, forgets it, looks it up again and retries once. */
  async #withKey<K, T>(lookup: () => K, forget: () => void, use: (key: K) => Promise<T>): Promise<T> {
    try {
      return await use(lookup());
    } catch (error) {
      if (!ckrIn(STALE_HANDLE, error)) throw error;
      forget();
      return await use(lookup());
    }
  }

  #withResident<T>(
    label: string,
    use: (p11: P11, session: Session, key: ResidentKey) => Promise<T>,
  ): Promise<T> {
    return this.#withSession((p11, session) =>
      this.#withKey(
        () => this.#residentKey(p11, session, label),
        () => this.#resident.delete(label),
        (key) => use(p11, session, key),
      ),
    );
  }

  #dropSession(): void {
    const session = this.#session;
    this.#session = undefined;
    this.#rootKey = undefined;
    this.#resident.clear();
    if (session !== undefined) closeQuietly(this.#module.p11, session, true);
  }

  #randomBytes(p11: P11, session: Session, length: number): Buffer {
    const out = Buffer.alloc(length);
    for (let offset = 0; offset < length; offset += RANDOM_CHUNK_BYTES) {
      const chunk = out.subarray(offset, Math.min(length, offset + RANDOM_CHUNK_BYTES));
      ck('C_GenerateRandom', () => p11.C_GenerateRandom(session, chunk));
    }
    return out;
  }

  #findRootKey(p11: P11, session: Session): Handle | undefined {
    const found = findObjects(p11, session, [
      ...byLabel(this.#rootKeyLabel, pkcs11js.CKO_SECRET_KEY),
      { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_AES },
    ]);
    const [key] = found;
    if (key === undefined) return undefined;
    if (found.length > 1) {
      throw new HsmError('hsm_config', `${found.length} AES keys are labelled "${this.#rootKeyLabel}"`);
    }
    // A pre-provisioned key (e.g. created by the HSM's own tools) must meet the same policy as ours.
    const attributes = keyAttributes(p11, session, key);
    if (
      attributes.valueLen !== 32 ||
      !attributes.token ||
      !attributes.sensitive ||
      attributes.extractable ||
      !attributes.encrypt ||
      !attributes.decrypt
    ) {
      throw new HsmError(
        'hsm_key_policy',
        `the root key "${this.#rootKeyLabel}" must be a 256-bit AES token key, sensitive, non-extractable, ` +
          'with CKA_ENCRYPT and CKA_DECRYPT',
      );
    }
    return key;
  }

  #requireRootKey(p11: P11, session: Session): Handle {
    this.#rootKey ??= this.#findRootKey(p11, session);
    this.#initialized = this.#rootKey !== undefined;
    if (this.#rootKey === undefined) {
      throw new HsmError(
        'hsm_key_not_found',
        'the PKCS#11 root is not initialised: no root key on the token',
      );
    }
    return this.#rootKey;
  }

  #checkResidentLabel(label: string): void {
    checkLabel(label, 'a resident key label');
    if (label === this.#rootKeyLabel) {
      throw new InvalidInputError('the root key label cannot be used for a resident key');
    }
  }

  #residentKey(p11: P11, session: Session, label: string): ResidentKey {
    const cached = this.#resident.get(label);
    if (cached !== undefined) return cached;
    const key = classifyResident(p11, session, label);
    this.#resident.set(label, key);
    return key;
  }

  #requireType(key: ResidentKey, label: string, operation: string, ...types: ResidentKeyType[]): ResidentKey {
    if (!types.includes(key.type)) {
      throw new HsmError('hsm_wrong_key_type', `"${label}" is an ${key.type} key and cannot ${operation}`);
    }
    return key;
  }

  async #gcmEncrypt(
    p11: P11,
    session: Session,
    key: Handle,
    plaintext: Uint8Array,
    aad: Uint8Array,
  ): Promise<Buffer> {
    const iv = this.#randomBytes(p11, session, IV_BYTES);
    // A private copy: the native call reads it on a thread-pool thread while the caller's buffer may change.
    const input = Buffer.from(plaintext);
    try {
      ck('C_EncryptInit', () => {
        p11.C_EncryptInit(session, gcmMechanism(iv, aad), key);
      });
      const sealed = await ckAsync('C_Encrypt', () =>
        p11.C_EncryptAsync(session, input, Buffer.alloc(input.byteLength + TAG_BYTES)),
      );
      if (sealed.byteLength !== input.byteLength + TAG_BYTES) {
        throw new HsmError('hsm_error', 'AES-GCM returned an unexpected length');
      }
      return Buffer.concat([Uint8Array.of(FORMAT_VERSION), iv, sealed]);
    } finally {
      wipe(input);
    }
  }

  async #gcmDecrypt(
    p11: P11,
    session: Session,
    key: Handle,
    wrapped: Uint8Array,
    aad: Uint8Array,
  ): Promise<Buffer> {
    if (
      wrapped.byteLength <= PKCS11_WRAP_OVERHEAD ||
      wrapped.byteLength > PKCS11_MAX_PLAINTEXT_BYTES + PKCS11_WRAP_OVERHEAD ||
      wrapped[0] !== FORMAT_VERSION
    ) {
      throw new DecryptionError();
    }
    const iv = Buffer.from(wrapped.subarray(1, 1 + IV_BYTES));
    const body = Buffer.from(wrapped.subarray(1 + IV_BYTES));
    const out = Buffer.alloc(body.byteLength);
    try {
      ck('C_DecryptInit', () => {
        p11.C_DecryptInit(session, gcmMechanism(iv, aad), key);
      });
      const plaintext = await ckAsync('C_Decrypt', () => p11.C_DecryptAsync(session, body, out));
      if (plaintext.byteLength !== body.byteLength - TAG_BYTES) throw new DecryptionError();
      return Buffer.from(plaintext);
    } catch (error) {
      // A lost session is not a property of the ciphertext; a stale handle is retried by #withKey. Anything else,
      // including SoftHSM's CKR_GENERAL_ERROR for a bad tag, is the one DecryptionError.
      if (ckrIn(SESSION_LOST, error) || ckrIn(STALE_HANDLE, error)) throw error;
      throw new DecryptionError();
    } finally {
      wipe(out);
    }
  }
}

function checkLabel(label: string, what: string): void {
  if (typeof label !== 'string' || label === '' || Buffer.byteLength(label) > MAX_LABEL_BYTES) {
    throw new InvalidInputError(`${what} must be 1 to ${MAX_LABEL_BYTES} bytes`);
  }
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(label))
    throw new InvalidInputError(`${what} must not contain control characters`);
}

function closeQuietly(p11: P11, session: Session, logout: boolean): void {
  if (logout) {
    try {
      p11.C_Logout(session);
    } catch {
      // Not logged in, or the session is already gone: either way there is nothing left to log out.
    }
  }
  try {
    p11.C_CloseSession(session);
  } catch {
    // Already closed (HSM restart, C_Finalize): the handle is dead either way.
  }
}

function keyAttributes(p11: P11, session: Session, key: Handle): Pkcs11KeyAttributes {
  const A = pkcs11js;
  const [label, valueLen, ...flags] = readAttributes(p11, session, key, [
    A.CKA_LABEL,
    A.CKA_VALUE_LEN,
    A.CKA_TOKEN,
    A.CKA_PRIVATE,
    A.CKA_SENSITIVE,
    A.CKA_ALWAYS_SENSITIVE,
    A.CKA_EXTRACTABLE,
    A.CKA_NEVER_EXTRACTABLE,
    A.CKA_LOCAL,
    A.CKA_ENCRYPT,
    A.CKA_DECRYPT,
    A.CKA_WRAP,
    A.CKA_UNWRAP,
  ]);
  const [token, isPrivate, sensitive, alwaysSensitive, extractable, neverExtractable, local, ...usage] =
    flags.map(boolOf);
  const [encrypt, decrypt, wrap, unwrap] = usage;
  return {
    label: (label ?? Buffer.alloc(0)).toString('utf8'),
    valueLen: ulongOf(valueLen ?? Buffer.alloc(0)),
    token: token === true,
    private: isPrivate === true,
    sensitive: sensitive === true,
    alwaysSensitive: alwaysSensitive === true,
    extractable: extractable === true,
    neverExtractable: neverExtractable === true,
    local: local === true,
    encrypt: encrypt === true,
    decrypt: decrypt === true,
    wrap: wrap === true,
    unwrap: unwrap === true,
  };
}

/** Finds the objects labelled `label` and works out which kind of resident key they make up. */
function classifyResident(p11: P11, session: Session, label: string): ResidentKey {
  const secrets: Handle[] = [];
  const privates: Handle[] = [];
  const publics: Handle[] = [];
  for (const object of findObjects(p11, session, byLabel(label))) {
    const [objectClass] = readAttributes(p11, session, object, [pkcs11js.CKA_CLASS]);
    const value = ulongOf(objectClass ?? Buffer.alloc(0));
    if (value === pkcs11js.CKO_SECRET_KEY) secrets.push(object);
    else if (value === pkcs11js.CKO_PRIVATE_KEY) privates.push(object);
    else if (value === pkcs11js.CKO_PUBLIC_KEY) publics.push(object);
  }
  const total = secrets.length + privates.length + publics.length;
  if (total === 0) throw new HsmError('hsm_key_not_found', `no key labelled "${label}" on the token`);
  const [secret] = secrets;
  if (secret !== undefined && total === 1) {
    const [keyType, valueLen] = readAttributes(p11, session, secret, [
      pkcs11js.CKA_KEY_TYPE,
      pkcs11js.CKA_VALUE_LEN,
    ]).map((value) => ulongOf(value));
    if (keyType === pkcs11js.CKK_AES && valueLen === 32) return { type: 'aes256', handle: secret };
    if (keyType === pkcs11js.CKK_GENERIC_SECRET || keyType === pkcs11js.CKK_SHA256_HMAC) {
      return { type: 'hmac-sha256', handle: secret };
    }
    throw new HsmError('hsm_wrong_key_type', `"${label}" is not a key type Warden uses`);
  }
  const [privateKey] = privates;
  if (privateKey !== undefined && privates.length === 1 && secrets.length === 0 && publics.length <= 1) {
    const [keyType, ecParams] = readAttributes(p11, session, privateKey, [
      pkcs11js.CKA_KEY_TYPE,
      pkcs11js.CKA_EC_PARAMS,
    ]);
    const curve =
      keyType !== undefined && ulongOf(keyType) === pkcs11js.CKK_EC && ecParams !== undefined
        ? curveOfEcParams(ecParams)
        : undefined;
    if (curve === undefined) throw new HsmError('hsm_wrong_key_type', `"${label}" is not a P-256/P-384 key`);
    const [publicKey] = publics;
    return {
      type: curve === 'P-256' ? 'ecdsa-p256' : 'ecdsa-p384',
      handle: privateKey,
      curve,
      ...(publicKey === undefined ? {} : { publicKey }),
    };
  }
  throw new HsmError('hsm_config', `the objects labelled "${label}" do not form one key (${total} objects)`);
}

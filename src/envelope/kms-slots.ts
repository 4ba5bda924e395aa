import { DecryptionError } from '../crypto/index.ts';
import type { KeySlot } from './header.ts';
import type { SlotUnwrapper, SlotWrapper } from './keys.ts';

/**
 * What the envelope needs from a KMS: the in-process service and the HTTP client both satisfy it (through a thin
 * adapter binding a principal or a connection). Ciphertexts are the KMS's self-describing strings
 * (`warden:v1:<key>:<version>:...`), so a slot's `ref` is the key name and its wrapped key names the version.
 */
export interface KmsDataKeyApi {
  generateDataKey(keyName: string, context: Uint8Array): Promise<{ plaintext: Buffer; ciphertext: string }>;
  encrypt(keyName: string, plaintext: Uint8Array, context: Uint8Array): Promise<string>;
  decryptDataKey(ciphertext: string, context: Uint8Array): Promise<Buffer>;
  rewrap(ciphertext: string, context: Uint8Array): Promise<string>;
}

/** Errors of the KMS that mean "this slot does not open": reported as the envelope's one DecryptionError. */
export type IsDecryptionFailure = (err: unknown) => boolean;

export class KmsSlots implements SlotWrapper, SlotUnwrapper {
  readonly slotType = 'kms' as const;
  readonly #api: KmsDataKeyApi;
  readonly #keyName: string;
  readonly #isDecryptionFailure: IsDecryptionFailure;

  constructor(api: KmsDataKeyApi, keyName: string, isDecryptionFailure: IsDecryptionFailure) {
    this.#api = api;
    this.#keyName = keyName;
    this.#isDecryptionFailure = isDecryptionFailure;
  }

  async generateDataKey(slotAadFor: (ref: string) => Buffer): Promise<{ dataKey: Buffer; slot: KeySlot }> {
    const { plaintext, ciphertext } = await this.#api.generateDataKey(
      this.#keyName,
      slotAadFor(this.#keyName),
    );
    return {
      dataKey: plaintext,
      slot: { type: 'kms', ref: this.#keyName, wrappedKey: Buffer.from(ciphertext, 'utf8') },
    };
  }

  async wrapDataKey(dataKey: Uint8Array, slotAadFor: (ref: string) => Buffer): Promise<KeySlot> {
    const ciphertext = await this.#api.encrypt(this.#keyName, dataKey, slotAadFor(this.#keyName));
    return { type: 'kms', ref: this.#keyName, wrappedKey: Buffer.from(ciphertext, 'utf8') };
  }

  /** Any KMS slot: whether this caller may open it is the KMS's decision, not something the header can tell. */
  canUnwrap(slot: KeySlot): boolean {
    return slot.type === 'kms';
  }

  async unwrapDataKey(slot: KeySlot, aad: Buffer): Promise<Buffer> {
    try {
      return await this.#api.decryptDataKey(slot.wrappedKey.toString('utf8'), aad);
    } catch (err) {
      if (this.#isDecryptionFailure(err)) throw new DecryptionError();
      throw err;
    }
  }

  /** The slot re-wrapped under the key's latest version; the data key stays inside the KMS. */
  async rewrapSlot(slot: KeySlot, aad: Buffer): Promise<KeySlot> {
    const ciphertext = await this.#api.rewrap(slot.wrappedKey.toString('utf8'), aad);
    return { ...slot, wrappedKey: Buffer.from(ciphertext, 'utf8') };
  }
}

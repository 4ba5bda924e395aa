import type { Dispatcher } from 'undici';
import { buildImportBlob } from './byok.ts';
import { KmsClientError } from './errors.ts';
import { WardenHttp } from './http.ts';
import type { WardenHttpOptions } from './http.ts';
import type {
  BatchItemResult,
  CreateKeyRequest,
  DataKey,
  ErrorDetail,
  Health,
  Key,
  KeyInfo,
  KeyOptions,
  KeyType,
  KeyVersion,
  Mac,
  RootStatus,
  Signature,
  UpdateKeyRequest,
} from './types.ts';

export type KmsClientOptions = WardenHttpOptions;

/** Bytes in, bytes out: context and payloads are `Uint8Array`s; the wire carries base64. */
export interface CiphertextInput {
  readonly ciphertext: string;
  readonly context?: Uint8Array;
}

type Json = Record<string, unknown>;

const b64 = (bytes: Uint8Array): string =>
  Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
const withContext = (context: Uint8Array | undefined): { context?: string } =>
  context === undefined ? {} : { context: b64(context) };
const key = (name: string): string => encodeURIComponent(name);

/**
 * The Warden KMS SDK: one typed method per route of the HTTP API, over a connection pool (undici). Bytes are
 * `Uint8Array`s in and `Buffer`s out. Every failure is a `KmsClientError` carrying the server's `code` and HTTP
 * `status`; the token is held privately and never appears in an error or in `util.inspect` output.
 */
export class KmsClient {
  readonly #http: WardenHttp;

  constructor(options: KmsClientOptions | WardenHttp) {
    this.#http = options instanceof WardenHttp ? options : new WardenHttp(options);
  }

  get address(): string {
    return this.#http.address;
  }

  /** Closes the connection pool after in-flight requests finish. */
  async close(): Promise<void> {
    await this.#http.close();
  }

  // ---- system and operator ------------------------------------------------------------------------------

  /** Health; resolves for 503 (sealed, uninitialised) too, since the body says which. */
  async health(): Promise<Health> {
    return (await this.#http.request<Health>('GET', '/v1/health', undefined, { acceptedErrors: [503] })).body;
  }

  async openapi(): Promise<Json> {
    return this.#json<Json>('GET', '/v1/openapi.json');
  }

  async status(): Promise<RootStatus> {
    return this.#json<RootStatus>('GET', '/v1/operator/status');
  }

  /** Initialises the root of trust; the shares are returned once and must be distributed to operators. */
  async init(request: { shares: number; threshold: number }): Promise<{ shares: string[] }> {
    return this.#json('POST', '/v1/operator/init', { shares: request.shares, threshold: request.threshold });
  }

  async unseal(share: string): Promise<RootStatus> {
    return this.#json('POST', '/v1/operator/unseal', { share });
  }

  async seal(): Promise<RootStatus> {
    return this.#json('POST', '/v1/operator/seal');
  }

  // ---- key administration -------------------------------------------------------------------------------

  async createKey(request: CreateKeyRequest): Promise<KeyInfo> {
    return this.#json('POST', '/v1/kms/keys', request);
  }

  async listKeys(): Promise<Key[]> {
    return (await this.#json<{ keys: Key[] }>('GET', '/v1/kms/keys')).keys;
  }

  async getKey(name: string): Promise<KeyInfo> {
    return this.#json('GET', `/v1/kms/keys/${key(name)}`);
  }

  async updateKey(name: string, changes: UpdateKeyRequest): Promise<Key> {
    return (await this.#json<{ key: Key }>('PATCH', `/v1/kms/keys/${key(name)}`, changes)).key;
  }

  async rotateKey(name: string): Promise<KeyVersion> {
    return (await this.#json<{ version: KeyVersion }>('POST', `/v1/kms/keys/${key(name)}/rotate`)).version;
  }

  /** Disables `version`, or every enabled version when omitted; returns the versions changed. */
  async disableKey(name: string, version?: number): Promise<KeyVersion[]> {
    return this.#setState('disable', name, version);
  }

  async enableKey(name: string, version?: number): Promise<KeyVersion[]> {
    return this.#setState('enable', name, version);
  }

  async #setState(action: 'disable' | 'enable', name: string, version?: number): Promise<KeyVersion[]> {
    const body = version === undefined ? {} : { version };
    return (await this.#json<{ versions: KeyVersion[] }>('POST', `/v1/kms/keys/${key(name)}/${action}`, body))
      .versions;
  }

  /** Schedules destruction after `delayDays` (default 7); 0 destroys the version now (irreversible). */
  async destroyVersion(name: string, version: number, delayDays?: number): Promise<KeyVersion> {
    const body = delayDays === undefined ? {} : { delayDays };
    return (
      await this.#json<{ version: KeyVersion }>(
        'POST',
        `/v1/kms/keys/${key(name)}/versions/${version}/destroy`,
        body,
      )
    ).version;
  }

  async cancelDestroy(name: string, version: number): Promise<KeyVersion> {
    return (
      await this.#json<{ version: KeyVersion }>(
        'POST',
        `/v1/kms/keys/${key(name)}/versions/${version}/cancel-destroy`,
      )
    ).version;
  }

  async publicKey(name: string, version?: number): Promise<{ pem: string; keyVersion: number }> {
    const query = version === undefined ? '' : `?version=${version}`;
    return this.#json('GET', `/v1/kms/keys/${key(name)}/public-key${query}`);
  }

  async importWrappingKey(): Promise<{ pem: string; algorithm: string }> {
    return this.#json('GET', '/v1/kms/import-wrapping-key');
  }

  /** Imports a blob already wrapped for the KMS (see `buildImportBlob`). */
  async importKeyBlob(
    name: string,
    request: KeyOptions & { type: KeyType; blob: Uint8Array },
  ): Promise<KeyInfo> {
    const { blob, ...rest } = request;
    return this.#json('POST', `/v1/kms/keys/${key(name)}/import`, { ...rest, blob: b64(blob) });
  }

  /**
   * BYOK: fetches the KMS's import wrapping key, wraps `material` for it locally and imports it, creating the key
   * or adding a version. Material: 32 raw bytes (aes256-gcm, hmac-sha256) or PKCS#8 DER (signing keys).
   */
  async importKey(
    name: string,
    request: KeyOptions & { type: KeyType; material: Uint8Array },
  ): Promise<KeyInfo> {
    const { material, ...rest } = request;
    const { pem } = await this.importWrappingKey();
    return this.importKeyBlob(name, { ...rest, blob: buildImportBlob(pem, material) });
  }

  /** Key material of an exportable key: raw bytes (symmetric) or PKCS#8 DER. Wipe it after use. */
  async exportKey(name: string, version?: number): Promise<{ version: number; material: Buffer }> {
    const body = version === undefined ? {} : { version };
    const r = await this.#json<{ version: number; material: string }>(
      'POST',
      `/v1/kms/keys/${key(name)}/export`,
      body,
    );
    return { version: r.version, material: Buffer.from(r.material, 'base64') };
  }

  // ---- cryptographic operations -------------------------------------------------------------------------

  async encrypt(name: string, plaintext: Uint8Array, context?: Uint8Array): Promise<string> {
    const body = { plaintext: b64(plaintext), ...withContext(context) };
    return (await this.#json<{ ciphertext: string }>('POST', `/v1/kms/encrypt/${key(name)}`, body))
      .ciphertext;
  }

  async encryptBatch(
    name: string,
    items: readonly { plaintext: Uint8Array; context?: Uint8Array }[],
  ): Promise<BatchItemResult<string>[]> {
    const body = { items: items.map((i) => ({ plaintext: b64(i.plaintext), ...withContext(i.context) })) };
    return this.#batch('POST', `/v1/kms/encrypt/${key(name)}`, body, (r) => str(r, 'ciphertext'));
  }

  async decrypt(ciphertext: string, context?: Uint8Array): Promise<Buffer> {
    const r = await this.#json<{ plaintext: string }>('POST', '/v1/kms/decrypt', {
      ciphertext,
      ...withContext(context),
    });
    return Buffer.from(r.plaintext, 'base64');
  }

  async decryptBatch(items: readonly CiphertextInput[]): Promise<BatchItemResult<Buffer>[]> {
    return this.#batch('POST', '/v1/kms/decrypt', ciphertextItems(items), (r) => bytes(r, 'plaintext'));
  }

  /** A fresh 256-bit data key wrapped under the key; `plaintext: false` returns only the wrapped form. */
  async generateDataKey(
    name: string,
    options: { context?: Uint8Array; plaintext?: boolean } = {},
  ): Promise<DataKey> {
    const body = {
      ...withContext(options.context),
      ...(options.plaintext === undefined ? {} : { plaintext: options.plaintext }),
    };
    return dataKey(await this.#json<Json>('POST', `/v1/kms/datakey/${key(name)}`, body));
  }

  async generateDataKeyBatch(
    name: string,
    items: readonly { context?: Uint8Array }[],
    options: { plaintext?: boolean } = {},
  ): Promise<BatchItemResult<DataKey>[]> {
    const body = {
      items: items.map((i) => withContext(i.context)),
      ...(options.plaintext === undefined ? {} : { plaintext: options.plaintext }),
    };
    return this.#batch('POST', `/v1/kms/datakey/${key(name)}`, body, dataKey);
  }

  async decryptDataKey(ciphertext: string, context?: Uint8Array): Promise<Buffer> {
    const r = await this.#json<{ plaintext: string }>('POST', '/v1/kms/decrypt-datakey', {
      ciphertext,
      ...withContext(context),
    });
    return Buffer.from(r.plaintext, 'base64');
  }

  async decryptDataKeyBatch(items: readonly CiphertextInput[]): Promise<BatchItemResult<Buffer>[]> {
    return this.#batch('POST', '/v1/kms/decrypt-datakey', ciphertextItems(items), (r) =>
      bytes(r, 'plaintext'),
    );
  }

  async rewrap(ciphertext: string, context?: Uint8Array): Promise<string> {
    return (
      await this.#json<{ ciphertext: string }>('POST', '/v1/kms/rewrap', {
        ciphertext,
        ...withContext(context),
      })
    ).ciphertext;
  }

  async rewrapBatch(items: readonly CiphertextInput[]): Promise<BatchItemResult<string>[]> {
    return this.#batch('POST', '/v1/kms/rewrap', ciphertextItems(items), (r) => str(r, 'ciphertext'));
  }

  async sign(name: string, message: Uint8Array): Promise<Signature> {
    return signature(await this.#json<Json>('POST', `/v1/kms/sign/${key(name)}`, { message: b64(message) }));
  }

  async signBatch(name: string, messages: readonly Uint8Array[]): Promise<BatchItemResult<Signature>[]> {
    const body = { items: messages.map((m) => ({ message: b64(m) })) };
    return this.#batch('POST', `/v1/kms/sign/${key(name)}`, body, signature);
  }

  async verify(name: string, message: Uint8Array, sig: Uint8Array, version?: number): Promise<boolean> {
    const body = {
      message: b64(message),
      signature: b64(sig),
      ...(version === undefined ? {} : { version }),
    };
    return (await this.#json<{ valid: boolean }>('POST', `/v1/kms/verify/${key(name)}`, body)).valid;
  }

  async verifyBatch(
    name: string,
    items: readonly { message: Uint8Array; signature: Uint8Array; version?: number }[],
  ): Promise<BatchItemResult<boolean>[]> {
    const body = {
      items: items.map((i) => ({
        message: b64(i.message),
        signature: b64(i.signature),
        ...(i.version === undefined ? {} : { version: i.version }),
      })),
    };
    return this.#batch('POST', `/v1/kms/verify/${key(name)}`, body, (r) => r.valid === true);
  }

  async hmac(name: string, data: Uint8Array): Promise<Mac> {
    return mac(await this.#json<Json>('POST', `/v1/kms/hmac/${key(name)}`, { data: b64(data) }));
  }

  async hmacBatch(name: string, data: readonly Uint8Array[]): Promise<BatchItemResult<Mac>[]> {
    const body = { items: data.map((d) => ({ data: b64(d) })) };
    return this.#batch('POST', `/v1/kms/hmac/${key(name)}`, body, mac);
  }

  async verifyHmac(name: string, data: Uint8Array, tag: Uint8Array, version?: number): Promise<boolean> {
    const body = { data: b64(data), mac: b64(tag), ...(version === undefined ? {} : { version }) };
    return (await this.#json<{ valid: boolean }>('POST', `/v1/kms/verify-hmac/${key(name)}`, body)).valid;
  }

  async verifyHmacBatch(
    name: string,
    items: readonly { data: Uint8Array; mac: Uint8Array; version?: number }[],
  ): Promise<BatchItemResult<boolean>[]> {
    const body = {
      items: items.map((i) => ({
        data: b64(i.data),
        mac: b64(i.mac),
        ...(i.version === undefined ? {} : { version: i.version }),
      })),
    };
    return this.#batch('POST', `/v1/kms/verify-hmac/${key(name)}`, body, (r) => r.valid === true);
  }

  /** Random bytes (1-1024) from the KMS root of trust's generator. */
  async random(length: number): Promise<Buffer> {
    const r = await this.#json<{ random: string }>('POST', '/v1/kms/random', { bytes: length });
    return Buffer.from(r.random, 'base64');
  }

  // ---- transport ----------------------------------------------------------------------------------------

  async #json<T>(method: Dispatcher.HttpMethod, path: string, body?: unknown): Promise<T> {
    return this.#http.json<T>(method, path, body);
  }

  async #batch<T>(
    method: Dispatcher.HttpMethod,
    path: string,
    body: unknown,
    map: (item: Json) => T,
  ): Promise<BatchItemResult<T>[]> {
    const r = await this.#json<{ items?: unknown }>(method, path, body);
    if (!Array.isArray(r.items))
      throw new KmsClientError('invalid_response', 200, 'the batch response has no items');
    return (r.items as Json[]).map((item): BatchItemResult<T> => {
      if (item.error !== undefined) return { ok: false, error: item.error as ErrorDetail };
      return { ok: true, value: map(item) };
    });
  }
}

function ciphertextItems(items: readonly CiphertextInput[]): { items: Json[] } {
  return { items: items.map((i) => ({ ciphertext: i.ciphertext, ...withContext(i.context) })) };
}

function str(r: Json, field: string): string {
  const value = r[field];
  if (typeof value !== 'string')
    throw new KmsClientError('invalid_response', 200, `the response has no ${field}`);
  return value;
}

function bytes(r: Json, field: string): Buffer {
  return Buffer.from(str(r, field), 'base64');
}

function dataKey(r: Json): DataKey {
  return {
    ciphertext: str(r, 'ciphertext'),
    keyVersion: Number(r.keyVersion),
    ...(typeof r.plaintext === 'string' ? { plaintext: Buffer.from(r.plaintext, 'base64') } : {}),
  };
}

function signature(r: Json): Signature {
  return { signature: bytes(r, 'signature'), keyVersion: Number(r.keyVersion) };
}

function mac(r: Json): Mac {
  return { mac: bytes(r, 'mac'), keyVersion: Number(r.keyVersion) };
}

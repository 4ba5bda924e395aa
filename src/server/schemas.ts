import { MAX_BATCH_ITEMS, MAX_CONTEXT_BYTES, MAX_PLAINTEXT_BYTES } from '../kms/index.ts';
import type { KeyInfo } from '../kms/index.ts';
import { DAY_MS, KEY_TYPES, VERSION_STATES } from '../kms/index.ts';
import type { KeyRecord, VersionRecord } from '../kms/index.ts';
import type { RootStatus } from '../kms/index.ts';

/**
 * JSON schemas of the HTTP API. They validate requests (strictly: no extra properties, no type coercion, base64
 * checked) and serialise responses, and @fastify/swagger turns them into the OpenAPI document, so the document
 * cannot drift from what the server enforces.
 */

/** Canonical, padded standard base64 (RFC 4648 §4). */
export const BASE64_PATTERN = '^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$';
export const KEY_NAME_SCHEMA_PATTERN = '^[a-z0-9][a-z0-9._-]{0,127}$';
export const VERSION_PATTERN = '^[1-9][0-9]{0,9}$';
/** A ciphertext is at most the KMS's largest plaintext in base64url plus its prefix, name and version. */
export const MAX_CIPHERTEXT_CHARS = 4 * Math.ceil((MAX_PLAINTEXT_BYTES + 64) / 3) + 256;

export type JsonSchema = Record<string, unknown>;

export function base64(maxBytes: number, description: string): JsonSchema {
  return {
    type: 'string',
    pattern: BASE64_PATTERN,
    maxLength: 4 * Math.ceil(maxBytes / 3),
    contentEncoding: 'base64',
    description: `${description} (base64)`,
  };
}

/**
 * Response-side forms, without patterns or lengths: batch responses are matched against their `oneOf` branches
 * when serialised, and re-checking megabytes of base64 the server itself produced would only cost time.
 */
export function base64Out(description: string): JsonSchema {
  return { type: 'string', contentEncoding: 'base64', description: `${description} (base64)` };
}
export const ciphertextOut: JsonSchema = {
  type: 'string',
  description: 'a KMS ciphertext, `warden:v1:<key name>:<version>:<base64url>`',
};

export const plaintextSchema = base64(MAX_PLAINTEXT_BYTES, 'plaintext, at most 64 KiB');
export const contextSchema = base64(
  MAX_CONTEXT_BYTES,
  'encryption context (additional authenticated data), at most 8 KiB; the same bytes are needed to decrypt',
);
export const ciphertextSchema: JsonSchema = {
  type: 'string',
  minLength: 1,
  maxLength: MAX_CIPHERTEXT_CHARS,
  description: 'a KMS ciphertext, `warden:v1:<key name>:<version>:<base64url>`',
};
export const versionNumberSchema: JsonSchema = { type: 'integer', minimum: 1, maximum: 4294967295 };
export const daysSchema = (description: string, minimum = 0): JsonSchema => ({
  type: 'number',
  minimum,
  maximum: 36500,
  description,
});

export const nameParams: JsonSchema = {
  type: 'object',
  required: ['name'],
  additionalProperties: false,
  properties: { name: { type: 'string', pattern: KEY_NAME_SCHEMA_PATTERN, description: 'key name' } },
};

export const nameVersionParams: JsonSchema = {
  type: 'object',
  required: ['name', 'version'],
  additionalProperties: false,
  properties: {
    name: { type: 'string', pattern: KEY_NAME_SCHEMA_PATTERN, description: 'key name' },
    version: { type: 'string', pattern: VERSION_PATTERN, description: 'key version (1, 2, ...)' },
  },
};

/** A strict object schema: every listed property, `required` ones mandatory, nothing else. */
export function object(properties: Record<string, JsonSchema>, required: string[] = []): JsonSchema {
  return { type: 'object', additionalProperties: false, required, properties };
}

/**
 * The body of a route taking either one item or a batch (`{ "items": [...] }`, 1 to 1000 items), told apart by
 * the presence of `items`; `extra` are batch-wide properties.
 */
export function singleOrBatch(
  item: JsonSchema,
  extra: Record<string, JsonSchema> = {},
  single: JsonSchema = item,
): JsonSchema {
  return {
    oneOf: [
      { ...single, title: 'single' },
      {
        ...object(
          {
            items: { type: 'array', minItems: 1, maxItems: MAX_BATCH_ITEMS, items: item },
            ...extra,
          },
          ['items'],
        ),
        title: 'batch',
      },
    ],
  };
}

/** The response of such a route: the single result, or `{ items }` with a result or an error per item. */
export function singleOrBatchResponse(result: Record<string, JsonSchema>, required: string[]): JsonSchema {
  return {
    oneOf: [
      { type: 'object', required, properties: result, title: 'single' },
      {
        type: 'object',
        required: ['items'],
        title: 'batch',
        properties: {
          items: {
            type: 'array',
            description: 'one entry per request item, in order: its result, or `error` when that item failed',
            items: { type: 'object', properties: { ...result, error: { $ref: 'ErrorDetail#' } } },
          },
        },
      },
    ],
  };
}

/** Error responses every route can return. */
export const errorResponses: Record<string, JsonSchema> = {
  '4xx': { $ref: 'ErrorResponse#' },
  '5xx': { $ref: 'ErrorResponse#' },
};

export const SHARED_SCHEMAS: JsonSchema[] = [
  {
    $id: 'ErrorDetail',
    type: 'object',
    required: ['code', 'message'],
    properties: {
      code: { type: 'string', description: 'stable machine-readable code, e.g. `key_not_found`' },
      message: { type: 'string', description: 'human-readable explanation; never contains secrets' },
    },
  },
  {
    $id: 'ErrorResponse',
    type: 'object',
    required: ['error'],
    properties: { error: { $ref: 'ErrorDetail#' } },
  },
  {
    $id: 'Key',
    type: 'object',
    required: [
      'name',
      'type',
      'createdAt',
      'rotationPeriodDays',
      'nextRotationAt',
      'latestVersion',
      'minDecryptionVersion',
      'autoFloorGraceDays',
      'exportable',
      'description',
    ],
    properties: {
      name: { type: 'string' },
      type: { type: 'string', enum: [...KEY_TYPES] },
      createdAt: { type: 'string', format: 'date-time' },
      rotationPeriodDays: {
        type: ['number', 'null'],
        description: 'days between automatic rotations; null: no automatic rotation',
      },
      nextRotationAt: { type: ['string', 'null'], format: 'date-time' },
      latestVersion: { type: 'integer' },
      minDecryptionVersion: { type: 'integer' },
      autoFloorGraceDays: {
        type: ['number', 'null'],
        description:
          'versions superseded longer ago than this stop decrypting; null: the floor moves by hand',
      },
      exportable: { type: 'boolean' },
      description: { type: 'string' },
    },
  },
  {
    $id: 'KeyVersion',
    type: 'object',
    required: ['name', 'version', 'state', 'createdAt', 'origin', 'destroyAt', 'destroyedAt', 'publicKey'],
    properties: {
      name: { type: 'string' },
      version: { type: 'integer' },
      state: { type: 'string', enum: [...VERSION_STATES] },
      createdAt: { type: 'string', format: 'date-time' },
      origin: { type: 'string', enum: ['generated', 'imported'] },
      destroyAt: { type: ['string', 'null'], format: 'date-time' },
      destroyedAt: { type: ['string', 'null'], format: 'date-time' },
      publicKey: {
        type: ['string', 'null'],
        description: 'SPKI DER (base64) of an asymmetric version; null for symmetric keys',
      },
    },
  },
  {
    $id: 'KeyInfo',
    type: 'object',
    required: ['key', 'versions'],
    properties: {
      key: { $ref: 'Key#' },
      versions: { type: 'array', items: { $ref: 'KeyVersion#' } },
    },
  },
  {
    $id: 'RootStatus',
    type: 'object',
    required: ['kind', 'initialized', 'sealed'],
    properties: {
      kind: { type: 'string', enum: ['software', 'pkcs11'] },
      initialized: { type: 'boolean' },
      sealed: { type: 'boolean' },
      threshold: { type: 'integer', description: 'software root: shares needed to unseal' },
      shares: { type: 'integer', description: 'software root: shares issued' },
      progress: { type: 'integer', description: 'software root: shares given so far while unsealing' },
      insecureDevMode: { type: 'boolean', description: 'development auto-unseal: never for real data' },
    },
  },
];

// ---- wire views of KMS records ------------------------------------------------------------------------------

export interface KeyView {
  name: string;
  type: KeyRecord['type'];
  createdAt: string;
  rotationPeriodDays: number | null;
  nextRotationAt: string | null;
  latestVersion: number;
  minDecryptionVersion: number;
  autoFloorGraceDays: number | null;
  exportable: boolean;
  description: string;
}

export interface VersionView {
  name: string;
  version: number;
  state: VersionRecord['state'];
  createdAt: string;
  origin: VersionRecord['origin'];
  destroyAt: string | null;
  destroyedAt: string | null;
  publicKey: string | null;
}

export interface KeyInfoView {
  key: KeyView;
  versions: VersionView[];
}

const iso = (ms: number): string => new Date(ms).toISOString();
const isoOrNull = (ms: number | null): string | null => (ms === null ? null : iso(ms));
const days = (ms: number | null): number | null => (ms === null ? null : ms / DAY_MS);

export function keyView(key: KeyRecord): KeyView {
  return {
    name: key.name,
    type: key.type,
    createdAt: iso(key.createdAt),
    rotationPeriodDays: days(key.rotationPeriodMs),
    nextRotationAt: isoOrNull(key.nextRotationAt),
    latestVersion: key.latestVersion,
    minDecryptionVersion: key.minDecryptionVersion,
    autoFloorGraceDays: days(key.autoFloorGraceMs),
    exportable: key.exportable,
    description: key.description,
  };
}

export function versionView(version: VersionRecord): VersionView {
  return {
    name: version.name,
    version: version.version,
    state: version.state,
    createdAt: iso(version.createdAt),
    origin: version.origin,
    destroyAt: isoOrNull(version.destroyAt),
    destroyedAt: isoOrNull(version.destroyedAt),
    publicKey: version.publicKey === null ? null : version.publicKey.toString('base64'),
  };
}

export function keyInfoView(info: KeyInfo): KeyInfoView {
  return { key: keyView(info.key), versions: info.versions.map(versionView) };
}

export function rootStatusView(status: RootStatus): RootStatus {
  return { ...status };
}

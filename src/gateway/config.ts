import { Ajv } from 'ajv';
import type { Policy } from '../privacy/index.ts';

/**
 * Gateway configuration: endpoints (what clients call) mapped to upstream model servers and to a registered
 * model version. The same shape is used by `createGateway` and, with file paths instead of PEM contents, by the
 * `warden gateway` configuration file (see docs/gateway.md for the file format).
 */
export const PROTOCOLS = ['openai', 'kserve-v2', 'predict'] as const;
export type Protocol = (typeof PROTOCOLS)[number];

/** `points` per `durationSeconds`, fixed window. */
export interface WindowLimit {
  readonly points: number;
  readonly durationSeconds: number;
}

export interface EndpointLimits {
  /** Request windows per principal and model, all enforced together (e.g. 100/hour and 20/day). */
  readonly requests?: readonly WindowLimit[];
  /** Token windows per principal and model (OpenAI protocol): reserved before the call, corrected after. */
  readonly tokens?: readonly WindowLimit[];
  /** Largest `max_tokens` passed upstream; larger or absent values are set to it. Default 4096. */
  readonly maxTokens?: number;
  /** Request body bytes. Default 1 MiB. */
  readonly maxBodyBytes?: number;
  /** Characters of prompt text (all messages, prompts or inputs together). Default 32 768. */
  readonly maxPromptChars?: number;
}

/** Parameters that leak model internals useful for extraction; refused unless allowed per endpoint. */
export interface AllowedParameters {
  readonly logprobs?: boolean;
  readonly topLogprobs?: boolean;
  readonly logitBias?: boolean;
}

export interface UpstreamConfig {
  /** Origin and base path of the model server, `http(s)://host:port[/base]`. */
  readonly url: string;
  /** PEM trust anchors for an https upstream (default: the system store). */
  readonly ca?: string | Buffer;
  /** PEM client certificate and key for mTLS. */
  readonly cert?: string | Buffer;
  readonly key?: string | Buffer;
  /** TLS server name when it differs from the URL's host. */
  readonly servername?: string;
  /** Pooled connections. Default 64. */
  readonly connections?: number;
  /** Time to the response headers, ms. Default 30 000. */
  readonly timeoutMs?: number;
  /** Longest silence inside a response body (streams included), ms. Default 60 000. */
  readonly idleTimeoutMs?: number;
  /** Extra attempts after a connection failure or 502/503/504, idempotent endpoints only. Default 2. */
  readonly retries?: number;
}

export interface EndpointConfig {
  /** Name clients use: the `model` field (OpenAI) or the `:model` path segment (KServe, predict). */
  readonly name: string;
  readonly protocol: Protocol;
  readonly upstream: UpstreamConfig;
  /** Model name sent upstream, when it differs from `name`. */
  readonly upstreamModel?: string;
  /** Registered model and version this endpoint serves (servable gating, audit, authorization). */
  readonly model: string;
  readonly version: string;
  readonly environment: string;
  readonly limits?: EndpointLimits;
  readonly allow?: AllowedParameters;
  /**
   * Whether a call may be repeated without effect: retried on connection failures and 502/503/504. Default:
   * true for `kserve-v2` and `predict` (pure functions of the input) and OpenAI embeddings, false for
   * generation (each call costs and may differ).
   */
  readonly idempotent?: boolean;
  /** Output PII policy; `false` disables output filtering for this endpoint. Default: the gateway's policy. */
  readonly outputPolicy?: Policy | false;
}

export const DEFAULT_MAX_TOKENS = 4096;
export const DEFAULT_MAX_BODY_BYTES = 1024 * 1024;
export const DEFAULT_MAX_PROMPT_CHARS = 32_768;
export const DEFAULT_UPSTREAM_TIMEOUT_MS = 30_000;
export const DEFAULT_IDLE_TIMEOUT_MS = 60_000;
export const DEFAULT_RETRIES = 2;
export const DEFAULT_CONNECTIONS = 64;

export class GatewayConfigError extends Error {
  readonly code = 'gateway_config_error';
}

const NAME = '^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$';
const windowSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['points', 'durationSeconds'],
  properties: {
    points: { type: 'integer', minimum: 1 },
    durationSeconds: { type: 'integer', minimum: 1, maximum: 366 * 86_400 },
  },
} as const;
const pem = { type: 'string', minLength: 1 } as const;

/** JSON schema of one endpoint as written in a configuration file (PEM material as file paths). */
export const ENDPOINT_FILE_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  required: ['name', 'protocol', 'upstream', 'model', 'version', 'environment'],
  properties: {
    name: { type: 'string', pattern: NAME },
    protocol: { enum: PROTOCOLS },
    upstreamModel: { type: 'string', minLength: 1, maxLength: 256 },
    model: { type: 'string', minLength: 1, maxLength: 256 },
    version: { type: 'string', minLength: 1, maxLength: 128 },
    environment: { type: 'string', minLength: 1, maxLength: 64 },
    idempotent: { type: 'boolean' },
    upstream: {
      type: 'object',
      additionalProperties: false,
      required: ['url'],
      properties: {
        url: { type: 'string', pattern: '^https?://' },
        caFile: pem,
        certFile: pem,
        keyFile: pem,
        servername: { type: 'string', minLength: 1 },
        connections: { type: 'integer', minimum: 1, maximum: 4096 },
        timeoutMs: { type: 'integer', minimum: 1 },
        idleTimeoutMs: { type: 'integer', minimum: 1 },
        retries: { type: 'integer', minimum: 0, maximum: 10 },
      },
    },
    limits: {
      type: 'object',
      additionalProperties: false,
      properties: {
        requests: { type: 'array', items: windowSchema, maxItems: 8 },
        tokens: { type: 'array', items: windowSchema, maxItems: 8 },
        maxTokens: { type: 'integer', minimum: 1 },
        maxBodyBytes: { type: 'integer', minimum: 64 },
        maxPromptChars: { type: 'integer', minimum: 1 },
      },
    },
    allow: {
      type: 'object',
      additionalProperties: false,
      properties: {
        logprobs: { type: 'boolean' },
        topLogprobs: { type: 'boolean' },
        logitBias: { type: 'boolean' },
      },
    },
    outputPolicy: {
      anyOf: [
        { const: false },
        {
          type: 'object',
          additionalProperties: false,
          properties: {
            actions: {
              type: 'object',
              additionalProperties: { enum: ['redact', 'mask', 'pseudonymize', 'block'] },
            },
            defaultAction: { enum: ['redact', 'mask', 'pseudonymize', 'block'] },
          },
        },
      ],
    },
  },
} as const;

const ajv = new Ajv({ allErrors: false, strict: true, coerceTypes: false, useDefaults: false });
const validateEndpointFile = ajv.compile(ENDPOINT_FILE_SCHEMA);

/** Checks an endpoint list given to `createGateway`: unique names per protocol family, sane URLs and limits. */
export function checkEndpoints(endpoints: readonly EndpointConfig[]): void {
  const seen = new Set<string>();
  for (const e of endpoints) {
    if (!new RegExp(NAME).test(e.name)) throw new GatewayConfigError(`invalid endpoint name: ${e.name}`);
    if (!PROTOCOLS.includes(e.protocol)) throw new GatewayConfigError(`endpoint ${e.name}: unknown protocol`);
    const family = e.protocol === 'openai' ? 'openai' : 'models';
    if (seen.has(`${family}/${e.name}`)) throw new GatewayConfigError(`duplicate endpoint name: ${e.name}`);
    seen.add(`${family}/${e.name}`);
    let url: URL;
    try {
      url = new URL(e.upstream.url);
    } catch {
      throw new GatewayConfigError(`endpoint ${e.name}: invalid upstream URL`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      throw new GatewayConfigError(`endpoint ${e.name}: upstream must be http or https`);
    }
    if (url.username !== '' || url.password !== '' || url.search !== '' || url.hash !== '') {
      throw new GatewayConfigError(`endpoint ${e.name}: upstream URL must not carry credentials or a query`);
    }
    if ((e.upstream.cert === undefined) !== (e.upstream.key === undefined)) {
      throw new GatewayConfigError(`endpoint ${e.name}: an mTLS client needs both cert and key`);
    }
    for (const w of [...(e.limits?.requests ?? []), ...(e.limits?.tokens ?? [])]) {
      if (
        !Number.isInteger(w.points) ||
        w.points < 1 ||
        !Number.isInteger(w.durationSeconds) ||
        w.durationSeconds < 1
      )
        throw new GatewayConfigError(`endpoint ${e.name}: limits need positive integer points and durations`);
    }
  }
}

/**
 * Turns endpoints from a configuration file into `EndpointConfig`s, reading PEM files through `readFile`.
 * Throws `GatewayConfigError` naming the first problem (never file contents).
 */
export function endpointsFromFile(value: unknown, readFile: (path: string) => Buffer): EndpointConfig[] {
  if (!Array.isArray(value) || value.length === 0) {
    throw new GatewayConfigError('endpoints must be a non-empty array');
  }
  const out: EndpointConfig[] = [];
  for (const [i, raw] of value.entries()) {
    if (!validateEndpointFile(raw)) {
      const err = validateEndpointFile.errors?.[0];
      const unknown: unknown =
        err?.keyword === 'additionalProperties'
          ? (err.params as { additionalProperty?: unknown }).additionalProperty
          : undefined;
      throw new GatewayConfigError(
        `endpoints[${i}]${err?.instancePath ?? ''}: ${
          typeof unknown === 'string' ? `unknown setting ${unknown}` : (err?.message ?? 'invalid')
        }`,
      );
    }
    const file = raw as unknown as {
      upstream: { caFile?: string; certFile?: string; keyFile?: string } & Record<string, unknown>;
    } & Record<string, unknown>;
    const { caFile, certFile, keyFile, ...upstream } = file.upstream;
    out.push({
      ...(file as unknown as EndpointConfig),
      upstream: {
        ...(upstream as unknown as UpstreamConfig),
        ...(caFile === undefined ? {} : { ca: readFile(caFile) }),
        ...(certFile === undefined ? {} : { cert: readFile(certFile) }),
        ...(keyFile === undefined ? {} : { key: readFile(keyFile) }),
      },
    });
  }
  checkEndpoints(out);
  return out;
}

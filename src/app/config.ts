import { readFileSync } from 'node:fs';
import os from 'node:os';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { GuardrailConfigError, guardrailPolicies } from '../policy/index.ts';
import type { GuardrailOptions } from '../policy/index.ts';
import { endpointsFromFile } from '../gateway/index.ts';
import type { EndpointConfig } from '../gateway/index.ts';
import { identityFactorsConfigFrom } from './identity-factors.ts';
import type { IdentityFactorsConfig } from './identity-factors.ts';
import { isValidKeyName } from '../audit/index.ts';
import type { AuditSinkConfig } from './audit-trail.ts';
import { unknownSetting } from '../settings/index.ts';

/**
 * Server configuration from an optional JSON file (`WARDEN_CONFIG`) overlaid by environment variables. Secrets
 * (PINs, tokens) are read from files or the environment, never from command-line arguments.
 */
export type RootMode = 'dev' | 'shamir' | 'pkcs11';

export interface WardenConfig {
  readonly dataDir: string;
  readonly listen: { readonly host: string; readonly port: number };
  readonly root: RootMode;
  /** PostgreSQL URLs; SQLite files in the data directory when absent. */
  readonly databaseUrl?: string;
  readonly keystoreUrl?: string;
  readonly rotationCheckSeconds: number;
  /** The URL clients reach this server at (token issuer, OAuth metadata); default: the listen address. */
  readonly publicUrl?: string;
  /** `dev` | `staging` | `prod`: in every request's ABAC context (policies may restrict by it). */
  readonly environment: string;
  /** OIDC login and security keys (docs/identity-oidc-webauthn.md). */
  readonly identityFactors: IdentityFactorsConfig;
  readonly gateway: {
    /** Model endpoints served at /v1/chat/completions, /v2/models/…/infer, … (docs/gateway.md). */
    readonly endpoints: readonly EndpointConfig[];
    /** With no endpoints configured: start the demo credit-scoring model and serve it (default true). */
    readonly demo: boolean;
  };
  readonly policies: {
    /** Guardrails (forbid policies) switched on by configuration: business hours, corporate ranges, step-up. */
    readonly guardrails: GuardrailOptions;
    /** `.cedar` files of the policy directory (`policies.dir`), by name: installed as `file.<name>`. */
    readonly files: readonly (readonly [string, string])[];
    /** IANA time zone of time-of-day conditions (default UTC). */
    readonly timeZone: string;
  };
  readonly audit: {
    /** The log's name in its checkpoints (C2SP origin), e.g. `warden.example.com/audit`. */
    readonly origin: string;
    /** Event bodies older than this are pruned (their hashes stay, so proofs still verify). Default 365. */
    readonly retentionDays: number;
    readonly sinks: readonly AuditSinkConfig[];
  };
}

interface ConfigFile {
  dataDir?: string;
  listen?: string;
  root?: RootMode;
  databaseUrl?: string;
  keystoreUrl?: string;
  rotationCheckSeconds?: number;
  environment?: string;
  publicUrl?: string;
  gateway?: { endpoints?: unknown[]; demo?: boolean };
  identityFactors?: unknown;
  policies?: { dir?: string; guardrails?: GuardrailOptions; timeZone?: string };
  audit?: { origin?: string; retentionDays?: number; sinks?: AuditSinkConfig[] };
}

/** Every setting `WARDEN_CONFIG` may hold, by section (anything else is refused: `unknownSetting`). */
const SETTINGS = {
  '': [
    'dataDir',
    'listen',
    'root',
    'databaseUrl',
    'keystoreUrl',
    'rotationCheckSeconds',
    'environment',
    'publicUrl',
    'gateway',
    'identityFactors',
    'policies',
    'audit',
  ] satisfies (keyof ConfigFile)[],
  gateway: ['endpoints', 'demo'] satisfies (keyof NonNullable<ConfigFile['gateway']>)[],
  policies: ['dir', 'guardrails', 'timeZone'] satisfies (keyof NonNullable<ConfigFile['policies']>)[],
  // A misspelt guardrail would leave it off.
  'policies.guardrails': [
    'restrictedDataBusinessHours',
    'corporateCidrs',
    'stepUpMfaMaxAgeSeconds',
    'reauthenticateOnNewNetwork',
  ] satisfies (keyof GuardrailOptions)[],
  audit: ['origin', 'retentionDays', 'sinks'] satisfies (keyof NonNullable<ConfigFile['audit']>)[],
} as const;

/** The settings of each kind of audit sink (`audit.sinks[]`, docs/audit-sinks.md). */
const SINK_SETTINGS = {
  file: ['type', 'path', 'maxBytes', 'keep'],
  syslog: ['type', 'host', 'port', 'caFile', 'certFile', 'keyFile'],
  webhook: ['type', 'url', 'caFile', 'authorizationFile', 'spoolDir', 'maxSpoolBytes'],
} as const satisfies Record<AuditSinkConfig['type'], readonly string[]>;

/** Each sink has a known type and only that type's settings: a misspelt `maxBytes` would never rotate the file. */
function checkSinks(sinks: unknown): void {
  if (sinks === undefined) return;
  if (!Array.isArray(sinks)) throw new ConfigError('audit.sinks must be an array');
  for (const [i, sink] of (sinks as unknown[]).entries()) {
    const type = typeof sink === 'object' && sink !== null ? (sink as { type?: unknown }).type : undefined;
    if (typeof type !== 'string' || !Object.hasOwn(SINK_SETTINGS, type)) {
      throw new ConfigError(`audit.sinks[${i}].type must be ${Object.keys(SINK_SETTINGS).join(', ')}`);
    }
    const unknown = unknownSetting(sink as object, { '': SINK_SETTINGS[type as AuditSinkConfig['type']] });
    if (unknown !== undefined) throw new ConfigError(`audit.sinks[${i}]: ${unknown}`);
  }
}

export class ConfigError extends Error {
  readonly code = 'config_error';
}

export function defaultDataDir(env: NodeJS.ProcessEnv): string {
  return path.join(env.XDG_DATA_HOME ?? path.join(os.homedir(), '.local', 'share'), 'warden');
}

export function loadConfig(
  env: NodeJS.ProcessEnv = process.env,
  overrides: Partial<ConfigFile> = {},
): WardenConfig {
  let file: ConfigFile = {};
  if (env.WARDEN_CONFIG !== undefined) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(readFileSync(env.WARDEN_CONFIG, 'utf8'));
    } catch (err) {
      throw new ConfigError(`cannot read ${env.WARDEN_CONFIG}: ${(err as Error).message}`);
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
      throw new ConfigError(`${env.WARDEN_CONFIG} must hold a JSON object`);
    }
    const unknown = unknownSetting(parsed, SETTINGS);
    if (unknown !== undefined) throw new ConfigError(`${env.WARDEN_CONFIG}: ${unknown}`);
    checkSinks((parsed as { audit?: { sinks?: unknown } }).audit?.sinks);
    file = parsed;
  }
  const merged: ConfigFile = {
    ...file,
    ...definedOnly({
      dataDir: env.WARDEN_DATA_DIR,
      listen: env.WARDEN_LISTEN,
      root: env.WARDEN_ROOT as RootMode | undefined,
      databaseUrl: env.WARDEN_DATABASE_URL,
      keystoreUrl: env.WARDEN_KEYSTORE_URL,
      environment: env.WARDEN_ENVIRONMENT,
      publicUrl: env.WARDEN_PUBLIC_URL,
    }),
    ...definedOnly(overrides),
  };
  const root = merged.root ?? 'dev';
  if (!['dev', 'shamir', 'pkcs11'].includes(root))
    throw new ConfigError(`root must be dev, shamir or pkcs11, not ${root}`);
  if ((merged.databaseUrl === undefined) !== (merged.keystoreUrl === undefined)) {
    throw new ConfigError(
      'set both WARDEN_DATABASE_URL and WARDEN_KEYSTORE_URL (the keystore is a separate database), or neither',
    );
  }
  const environment = merged.environment ?? 'dev';
  if (!['dev', 'staging', 'prod'].includes(environment)) {
    throw new ConfigError(`environment must be dev, staging or prod, not ${environment}`);
  }
  const origin = merged.audit?.origin ?? env.WARDEN_AUDIT_ORIGIN ?? 'warden.local/audit';
  if (!isValidKeyName(origin)) throw new ConfigError('audit.origin must be a note key name (no spaces or +)');
  const retentionDays = merged.audit?.retentionDays ?? 365;
  if (!Number.isInteger(retentionDays) || retentionDays < 1) {
    throw new ConfigError('audit.retentionDays must be a positive integer (default 365)');
  }
  const policyDir = merged.policies?.dir ?? env.WARDEN_POLICY_DIR;
  const files: [string, string][] = [];
  if (policyDir !== undefined) {
    for (const name of readdirSync(policyDir)
      .filter((n) => n.endsWith('.cedar'))
      .sort()) {
      files.push([name.slice(0, -'.cedar'.length), readFileSync(path.join(policyDir, name), 'utf8')]);
    }
  }
  let endpoints: EndpointConfig[] = [];
  if (merged.gateway?.endpoints !== undefined) {
    try {
      endpoints = endpointsFromFile(merged.gateway.endpoints, (file) => readFileSync(file));
    } catch (err) {
      throw new ConfigError(`gateway.endpoints: ${(err as Error).message}`);
    }
  }
  let identityFactors: IdentityFactorsConfig;
  try {
    identityFactors = identityFactorsConfigFrom(merged.identityFactors, env);
  } catch (err) {
    throw new ConfigError(`identityFactors: ${(err as Error).message}`);
  }
  // Checked here, where the operator's mistakes are usage errors (exit 2), not when the server assembles itself.
  const guardrails = merged.policies?.guardrails ?? {};
  try {
    guardrailPolicies(guardrails);
  } catch (err) {
    if (err instanceof GuardrailConfigError) throw new ConfigError(`policies.guardrails: ${err.message}`);
    throw err;
  }
  const timeZone = merged.policies?.timeZone ?? 'UTC';
  try {
    new Intl.DateTimeFormat('en-US', { timeZone });
  } catch {
    throw new ConfigError(`policies.timeZone: unknown time zone ${JSON.stringify(timeZone)}`);
  }
  return {
    identityFactors,
    gateway: {
      endpoints,
      demo: merged.gateway?.demo ?? env.WARDEN_DEMO !== '0',
    },
    policies: { guardrails, files, timeZone },
    ...(merged.publicUrl === undefined ? {} : { publicUrl: merged.publicUrl }),
    environment,
    audit: { origin, retentionDays, sinks: merged.audit?.sinks ?? [] },
    dataDir: path.resolve(merged.dataDir ?? defaultDataDir(env)),
    listen: parseListen(merged.listen ?? '127.0.0.1:8443'),
    root,
    ...(merged.databaseUrl === undefined ? {} : { databaseUrl: merged.databaseUrl }),
    ...(merged.keystoreUrl === undefined ? {} : { keystoreUrl: merged.keystoreUrl }),
    rotationCheckSeconds: merged.rotationCheckSeconds ?? 60,
  };
}

function parseListen(text: string): { host: string; port: number } {
  const match = /^(\[[0-9a-f:]+\]|[^:]+):(\d{1,5})$/i.exec(text);
  const port = Number(match?.[2]);
  if (match === null || port > 65535) throw new ConfigError(`listen address must be host:port, not ${text}`);
  return { host: (match[1] ?? '').replace(/^\[|\]$/g, ''), port };
}

function definedOnly<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}

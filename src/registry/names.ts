import { InvalidInputError } from './errors.ts';

/**
 * Parsers for everything a caller names: models, datasets, version labels, file paths inside an artifact,
 * digests, labels and lineage fields. Each returns the canonical value or throws InvalidInputError; nothing is
 * repaired silently (a path that needs normalising is refused, so one stored path has one spelling).
 */

export const NAME_PATTERN = /^[a-z0-9][a-z0-9._-]{0,127}$/;
export const VERSION_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$/;
const HEX64 = /^[0-9a-f]{64}$/;
const COMMIT = /^[0-9a-f]{7,64}$/;

export const SENSITIVITIES = ['public', 'internal', 'confidential', 'restricted'] as const;
export type Sensitivity = (typeof SENSITIVITIES)[number];
export const STAGES = ['dev', 'staging', 'prod'] as const;
export type Stage = (typeof STAGES)[number];

/** Longest artifact path (UTF-8 bytes) and path component, as common file systems allow. */
export const MAX_PATH_BYTES = 1024;
export const MAX_COMPONENT_BYTES = 255;
/** OMS always excludes these top-level names (§6.2), so a file under them could never be signed. */
const RESERVED_TOP_LEVEL = new Set(['.git', '.gitattributes', '.github', '.gitignore']);

function text(value: unknown, what: string): string {
  if (typeof value !== 'string') throw new InvalidInputError(`${what} must be a string`);
  return value;
}

export function parseName(value: unknown, what = 'name'): string {
  const s = text(value, what);
  if (!NAME_PATTERN.test(s)) {
    throw new InvalidInputError(`${what} must match ${NAME_PATTERN.source}`);
  }
  return s;
}

export function parseVersion(value: unknown): string {
  const s = text(value, 'version');
  if (!VERSION_PATTERN.test(s)) throw new InvalidInputError(`version must match ${VERSION_PATTERN.source}`);
  return s;
}

/**
 * A file path inside a model or dataset: `/`-separated, relative, no empty, `.` or `..` component, no
 * backslash (a separator elsewhere), no control characters, valid Unicode (no lone surrogates), bounded. These
 * are exactly the names OMS serialization can produce, so an uploaded file always appears in the manifest.
 */
export function parseArtifactPath(value: unknown): string {
  const s = text(value, 'file path');
  if (s.length === 0) throw new InvalidInputError('file path is empty');
  if (!s.isWellFormed()) throw new InvalidInputError('file path is not valid Unicode');
  if (Buffer.byteLength(s, 'utf8') > MAX_PATH_BYTES) {
    throw new InvalidInputError(`file path is longer than ${MAX_PATH_BYTES} bytes`);
  }
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f\\]/.test(s)) {
    throw new InvalidInputError('file path contains a control character or a backslash');
  }
  const components = s.split('/');
  for (const c of components) {
    if (c === '' || c === '.' || c === '..') {
      throw new InvalidInputError('file path must be relative, without empty, "." or ".." components');
    }
    if (Buffer.byteLength(c, 'utf8') > MAX_COMPONENT_BYTES) {
      throw new InvalidInputError(`a file path component is longer than ${MAX_COMPONENT_BYTES} bytes`);
    }
  }
  if (RESERVED_TOP_LEVEL.has(components[0] ?? '')) {
    throw new InvalidInputError('file paths under .git, .github, .gitattributes, .gitignore are not signed');
  }
  return s;
}

/** A SHA-256 digest as 64 lowercase hex digits, optionally written `sha256:<hex>`. */
export function parseDigest(value: unknown, what = 'digest'): string {
  const s = text(value, what);
  const hex = s.startsWith('sha256:') ? s.slice(7) : s;
  if (!HEX64.test(hex)) throw new InvalidInputError(`${what} must be 64 lowercase hex digits`);
  return hex;
}

export function parseSensitivity(value: unknown): Sensitivity {
  const s = text(value, 'sensitivity');
  if (!(SENSITIVITIES as readonly string[]).includes(s)) {
    throw new InvalidInputError(`sensitivity must be one of ${SENSITIVITIES.join(', ')}`);
  }
  return s as Sensitivity;
}

export function parseStage(value: unknown): Stage {
  const s = text(value, 'stage');
  if (!(STAGES as readonly string[]).includes(s)) {
    throw new InvalidInputError(`stage must be one of ${STAGES.join(', ')}`);
  }
  return s as Stage;
}

export function parseCommit(value: unknown): string {
  const s = text(value, 'code commit');
  if (!COMMIT.test(s)) throw new InvalidInputError('code commit must be 7 to 64 lowercase hex digits');
  return s;
}

/** Free text (descriptions, reasons): bounded, no control characters other than newline and tab. */
export function parseText(value: unknown, what: string, max = 1024): string {
  const s = text(value, what);
  if (s.length === 0 || s.length > max) throw new InvalidInputError(`${what} must be 1 to ${max} characters`);
  if (!s.isWellFormed()) throw new InvalidInputError(`${what} is not valid Unicode`);
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u0008\u000b-\u001f\u007f]/.test(s)) {
    throw new InvalidInputError(`${what} contains a control character`);
  }
  return s;
}

export type ParameterValue = string | number | boolean;
const PARAMETER_KEY = /^[A-Za-z_][A-Za-z0-9_.-]{0,63}$/;
export const MAX_PARAMETERS = 256;

/** Training parameters (hyper-parameters): a flat map of short keys to strings, finite numbers or booleans. */
export function parseParameters(value: unknown): Record<string, ParameterValue> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new InvalidInputError('parameters must be an object');
  }
  const entries = Object.entries(value);
  if (entries.length > MAX_PARAMETERS) {
    throw new InvalidInputError(`at most ${MAX_PARAMETERS} parameters`);
  }
  const out: [string, ParameterValue][] = [];
  for (const [key, v] of entries) {
    if (!PARAMETER_KEY.test(key))
      throw new InvalidInputError(`parameter name must match ${PARAMETER_KEY.source}`);
    if (typeof v === 'string') out.push([key, parseText(v, `parameter ${key}`, 512)]);
    else if ((typeof v === 'number' && Number.isFinite(v)) || typeof v === 'boolean') out.push([key, v]);
    else throw new InvalidInputError(`parameter ${key} must be a string, a finite number or a boolean`);
  }
  // fromEntries defines own properties, so a key such as __proto__ stays data and never reaches the prototype.
  return Object.fromEntries(out);
}

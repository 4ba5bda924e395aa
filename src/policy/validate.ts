import { policySetTextToParts, validate } from './cedar.ts';
import type { DetailedError } from './cedar.ts';
import { WARDEN_SCHEMA } from './schema.ts';

/** Longest policy text accepted for validation or installation (characters). */
export const MAX_POLICY_TEXT_CHARS = 256 * 1024;

/**
 * `parse`: not Cedar syntax. `validation`: Cedar, but not type-correct against Warden's schema (unknown entity
 * type, action or attribute, unguarded optional attribute...). `limit`: rejected before parsing (size, encoding).
 * `internal`: the Cedar library failed in an unexpected way (reported, never thrown).
 */
export type PolicyDiagnosticKind = 'parse' | 'validation' | 'limit' | 'internal';

export interface PolicyDiagnostic {
  readonly kind: PolicyDiagnosticKind;
  readonly severity: 'error' | 'warning';
  readonly message: string;
  readonly help?: string;
  /** Cedar's id for the policy (policy0, policy1... in text order) for validation diagnostics. */
  readonly policyId?: string;
  /** 1-based line and column (column in UTF-16 code units, as editors count) of the start of the problem. */
  readonly line?: number;
  readonly column?: number;
  /** 0-based character offset and length of the span, in UTF-16 code units of the text. */
  readonly offset?: number;
  readonly length?: number;
}

export interface PolicyValidationResult {
  readonly ok: boolean;
  /** Errors first, then warnings; `ok` is true when there is no error. */
  readonly diagnostics: readonly PolicyDiagnostic[];
  /** The text of each policy in order when the text parsed. */
  readonly policies: readonly string[];
}

/** Thrown by the policy store when asked to install text that does not validate. */
export class PolicyValidationError extends Error {
  override readonly name = 'PolicyValidationError';
  readonly diagnostics: readonly PolicyDiagnostic[];
  constructor(diagnostics: readonly PolicyDiagnostic[]) {
    const first = diagnostics.find((d) => d.severity === 'error') ?? diagnostics[0];
    const where = first?.line === undefined ? '' : ` at ${first.line}:${first.column ?? 0}`;
    super(`invalid policy${where}: ${first?.message ?? 'unknown error'}`);
    this.diagnostics = diagnostics;
  }
}

/** Maps Cedar's UTF-8 byte offsets onto line/column and UTF-16 offsets of the text. */
class Positions {
  readonly #bytes: Buffer;
  readonly #text: string;
  constructor(text: string) {
    this.#text = text;
    this.#bytes = Buffer.from(text, 'utf8');
  }
  locate(
    byteStart: number,
    byteEnd: number,
  ): Pick<PolicyDiagnostic, 'line' | 'column' | 'offset' | 'length'> {
    const clamp = (n: number): number => Math.max(0, Math.min(this.#bytes.length, Math.trunc(n)));
    const offset = this.#bytes.subarray(0, clamp(byteStart)).toString('utf8').length;
    const end = this.#bytes.subarray(0, clamp(Math.max(byteStart, byteEnd))).toString('utf8').length;
    const before = this.#text.slice(0, offset);
    const lineStart = before.lastIndexOf('\n') + 1;
    let line = 1;
    for (let i = before.indexOf('\n'); i !== -1; i = before.indexOf('\n', i + 1)) line += 1;
    return { line, column: offset - lineStart + 1, offset, length: Math.max(0, end - offset) };
  }
}

function toDiagnostics(
  kind: PolicyDiagnosticKind,
  error: DetailedError,
  positions: Positions,
  policyId?: string,
): PolicyDiagnostic[] {
  const location = error.sourceLocations?.[0];
  const severity = error.severity === 'warning' || error.severity === 'advice' ? 'warning' : 'error';
  const label = location?.label;
  const help = [label, error.help].filter((s): s is string => typeof s === 'string' && s !== '').join('; ');
  const own: PolicyDiagnostic = {
    kind,
    severity,
    message: error.message,
    ...(help === '' ? {} : { help }),
    ...(policyId === undefined ? {} : { policyId }),
    ...(location === undefined ? {} : positions.locate(location.start, location.end)),
  };
  const related = (error.related ?? []).flatMap((r) => toDiagnostics(kind, r, positions, policyId));
  return [own, ...related];
}

function internal(message: string): PolicyValidationResult {
  return { ok: false, diagnostics: [{ kind: 'internal', severity: 'error', message }], policies: [] };
}

/**
 * Parses `text` as a Cedar policy set and validates it (strict mode) against Warden's schema. Never throws: every
 * problem, including a failure inside the Cedar library, comes back as a typed diagnostic with its position.
 * Templates are refused (Warden installs static policies only).
 */
export function validatePolicies(text: string, schema: string = WARDEN_SCHEMA): PolicyValidationResult {
  if (typeof text !== 'string') return internal('policy text must be a string');
  if (text.length > MAX_POLICY_TEXT_CHARS) {
    return {
      ok: false,
      diagnostics: [
        { kind: 'limit', severity: 'error', message: `policy text over ${MAX_POLICY_TEXT_CHARS} characters` },
      ],
      policies: [],
    };
  }
  if (!text.isWellFormed()) {
    return {
      ok: false,
      diagnostics: [{ kind: 'limit', severity: 'error', message: 'policy text is not well-formed Unicode' }],
      policies: [],
    };
  }
  const positions = new Positions(text);
  try {
    const parts = policySetTextToParts(text);
    if (parts.type === 'failure') {
      return {
        ok: false,
        diagnostics: parts.errors.flatMap((e) => toDiagnostics('parse', e, positions)),
        policies: [],
      };
    }
    if (parts.policy_templates.length > 0) {
      return {
        ok: false,
        diagnostics: [
          {
            kind: 'validation',
            severity: 'error',
            message: 'policy templates (?principal / ?resource) are not supported',
          },
        ],
        policies: parts.policies,
      };
    }
    if (parts.policies.length === 0) {
      return {
        ok: false,
        diagnostics: [{ kind: 'parse', severity: 'error', message: 'no policy in the text' }],
        policies: [],
      };
    }
    const answer = validate({
      schema,
      policies: { staticPolicies: text },
      validationSettings: { mode: 'strict' },
    });
    if (answer.type === 'failure') {
      return {
        ok: false,
        diagnostics: answer.errors.flatMap((e) => toDiagnostics('parse', e, positions)),
        policies: [],
      };
    }
    const errors = answer.validationErrors.flatMap((e) =>
      toDiagnostics('validation', e.error, positions, e.policyId),
    );
    const warnings = [
      ...answer.validationWarnings.flatMap((e) =>
        toDiagnostics('validation', e.error, positions, e.policyId),
      ),
      ...answer.otherWarnings.flatMap((e) => toDiagnostics('validation', e, positions)),
    ].map((d): PolicyDiagnostic => ({ ...d, severity: 'warning' }));
    return { ok: errors.length === 0, diagnostics: [...errors, ...warnings], policies: parts.policies };
  } catch (err) {
    return internal(`cedar failed: ${err instanceof Error ? err.message : String(err)}`);
  }
}

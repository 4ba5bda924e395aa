import { shannonEntropy } from '../checksums.ts';
import { MAX_LOOKBEHIND, charClass, definePending, makeFinding, scanRegex } from '../scan.ts';
import type { Detector, Finding } from '../types.ts';

interface ProviderPattern {
  readonly kind: string;
  /** Regex source without capturing groups. */
  readonly source: string;
  readonly confidence: number;
}

/**
 * Credentials whose issuer gives them a recognisable prefix. Order matters where prefixes nest: the
 * specific OpenAI/Anthropic shapes come before the generic `sk-` one.
 */
const PROVIDERS: readonly ProviderPattern[] = [
  { kind: 'aws-access-key-id', source: '(?:AKIA|ASIA)[A-Z0-9]{16}', confidence: 0.9 },
  { kind: 'github-token', source: 'gh[pousr]_[A-Za-z0-9]{36}', confidence: 0.95 },
  {
    kind: 'github-fine-grained-token',
    source: 'github_pat_[A-Za-z0-9]{22}_[A-Za-z0-9]{59}',
    confidence: 0.95,
  },
  { kind: 'slack-token', source: 'xox[abprs]-[A-Za-z0-9-]{10,72}', confidence: 0.9 },
  { kind: 'stripe-live-key', source: '(?:sk|rk)_live_[A-Za-z0-9]{24,99}', confidence: 0.95 },
  { kind: 'google-api-key', source: 'AIza[0-9A-Za-z_-]{35}', confidence: 0.85 },
  { kind: 'anthropic-api-key', source: 'sk-ant-(?:api|admin)\\d{2}-[A-Za-z0-9_-]{80,120}', confidence: 0.95 },
  { kind: 'openai-project-key', source: 'sk-(?:proj|svcacct|admin)-[A-Za-z0-9_-]{40,200}', confidence: 0.9 },
  { kind: 'openai-legacy-key', source: 'sk-[A-Za-z0-9]{20}T3BlbkFJ[A-Za-z0-9]{20}', confidence: 0.95 },
  { kind: 'sk-prefixed-key', source: 'sk-[A-Za-z0-9]{32,64}', confidence: 0.6 },
];

const TOKEN_CHARS = 'A-Za-z0-9_-';

export function apiKeyDetector(): Detector {
  const re = new RegExp(
    `(?<![${TOKEN_CHARS}])(?:${PROVIDERS.map((p) => `(${p.source})`).join('|')})(?![${TOKEN_CHARS}])`,
    'g',
  );
  const maxLength = 220;
  const self: Detector = {
    id: 'api-key',
    entity: 'SECRET',
    maxLength,
    find(text: string, from = 0): Finding[] {
      return scanRegex(re, text, from, (m) => {
        const groups: readonly (string | undefined)[] = m;
        const index = groups.findIndex((g, i) => i > 0 && g !== undefined) - 1;
        const provider = PROVIDERS[index];
        if (provider === undefined) return undefined;
        return makeFinding(self, m.index, m.index + m[0].length, provider.confidence, {
          method: 'provider-pattern',
          strength: 'structure',
          detail: provider.kind,
        });
      });
    },
    pendingFrom: definePending({
      isStart: charClass('AgxsrG'),
      isPart: charClass(TOKEN_CHARS),
      lookahead: 0,
      maxLength,
    }),
  };
  return self;
}

/**
 * JSON Web Tokens: three base64url segments whose first two decode to JSON objects (`eyJ` is base64 for
 * `{"`). The header must name an `alg`, which separates tokens from arbitrary dotted base64. Segment
 * bounds cover RS512 signatures and generous payloads.
 */
const JWT =
  /(?<![A-Za-z0-9_.-])eyJ[A-Za-z0-9_-]{5,512}\.eyJ[A-Za-z0-9_-]{2,2048}\.[A-Za-z0-9_-]{0,700}(?![A-Za-z0-9_.=-])/g;

function decodeJsonObject(segment: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(Buffer.from(segment, 'base64url').toString('utf8'));
    return typeof value === 'object' && value !== null && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}

export function jwtDetector(): Detector {
  const re = new RegExp(JWT.source, 'g');
  const maxLength = 3 + 512 + 1 + 3 + 2048 + 1 + 700 + 2;
  const self: Detector = {
    id: 'jwt',
    entity: 'SECRET',
    maxLength,
    find(text: string, from = 0): Finding[] {
      return scanRegex(re, text, from, (m) => {
        const [header = '', payload = ''] = m[0].split('.');
        const h = decodeJsonObject(header);
        if (typeof h?.alg !== 'string' || decodeJsonObject(payload) === undefined) return undefined;
        return makeFinding(self, m.index, m.index + m[0].length, 0.9, {
          method: 'jwt-json',
          strength: 'structure',
          detail: 'jwt',
        });
      });
    },
    pendingFrom: definePending({
      isStart: charClass('e'),
      isPart: charClass('A-Za-z0-9_.=-'),
      lookahead: 0,
      maxLength,
    }),
  };
  return self;
}

/**
 * Values assigned to credential-like names: `password=…`, `"api_key": "…"`, `secret: …`, `Bearer …`,
 * `my password is …`. The name is matched by a bounded lookbehind so the finding covers only the value,
 * which is what gets redacted; the name stays readable.
 */
const KEYWORD =
  '(?<![A-Za-z0-9])(?:[A-Za-z0-9]{1,20}[_-])?(?:password|passwd|passphrase|pwd|pass|secret|token|apikey|api[_-]key|access[_-]key|secret[_-]key|private[_-]key|client[_-]secret|credentials?)';
const SEPARATOR = `["']?\\s{0,3}(?:[:=]|=>|:=)\\s{0,3}`;
const LEAD = `(?:${KEYWORD}${SEPARATOR}|${KEYWORD}\\s{1,3}(?:is|was)\\s{1,3}|(?<![A-Za-z0-9])bearer\\s{1,3})`;
const VALUE_CHARS = '^\\s"\'`<>,;()\\[\\]{}';
const ASSIGNMENT = new RegExp(
  `(?<=${KEYWORD}${SEPARATOR}["'])[^"'\\r\\n]{1,128}(?=["'])|(?<=${LEAD})[${VALUE_CHARS}]{4,128}(?![${VALUE_CHARS}])`,
  'gi',
);
/** Where a quoted value opens, for the streaming hold-back. */
const QUOTED_OPENER = new RegExp(`${KEYWORD}${SEPARATOR}["']`, 'gi');

/** Values that are placeholders, already masked, or booleans, not secrets. */
const PLACEHOLDER =
  /^(?:\*{1,128}|x{1,128}|\.{1,128}|\?{1,128}|<[^>]{0,126}>|\$\{[^}]{0,125}\}|\{\{[^}]{0,124}\}\}|%s|null|none|nil|undefined|true|false|required|optional|redacted|hidden|empty|string|example|your[_-]?[a-z_-]{0,40})$/i;

function characterClasses(s: string): number {
  return (
    Number(/[a-z]/.test(s)) +
    Number(/[A-Z]/.test(s)) +
    Number(/[0-9]/.test(s)) +
    Number(/[^A-Za-z0-9]/.test(s))
  );
}

export function secretAssignmentDetector(): Detector {
  const re = new RegExp(ASSIGNMENT.source, 'gi');
  const opener = new RegExp(QUOTED_OPENER.source, 'gi');
  const maxLength = 130;
  const unquotedPending = definePending({
    isStart: charClass(VALUE_CHARS),
    isPart: charClass(VALUE_CHARS),
    lookahead: 0,
    maxLength,
  });
  const self: Detector = {
    id: 'secret-assignment',
    entity: 'SECRET',
    maxLength,
    find(text: string, from = 0): Finding[] {
      return scanRegex(re, text, from, (m) => {
        const quoted = /["']/.test(text.charAt(m.index - 1));
        // A trailing period or comma after an unquoted value belongs to the prose. `!` and `?` stay: they
        // are common last characters of real passwords, and redacting one too many is the safe error.
        const value = quoted ? m[0] : m[0].replace(/[.,:;]{1,4}$/, '');
        if (value.length === 0 || PLACEHOLDER.test(value)) return undefined;
        // One-class values ("required", "12345") are far more often prose or examples than real secrets.
        const strong = characterClasses(value) >= 2 || value.length >= 12;
        return makeFinding(self, m.index, m.index + value.length, strong ? 0.75 : 0.1, {
          method: 'keyword-assignment',
          strength: 'heuristic',
        });
      });
    },
    pendingFrom(text: string): number {
      let pending = unquotedPending(text);
      const lo = Math.max(0, text.length - maxLength - MAX_LOOKBEHIND);
      opener.lastIndex = lo;
      for (let m = opener.exec(text); m !== null; m = opener.exec(text)) {
        const valueStart = m.index + m[0].length;
        if (valueStart >= text.length || valueStart >= pending) continue;
        const close = text.slice(valueStart).search(/["'\r\n]/);
        if (close < 0 && valueStart + maxLength > text.length) pending = valueStart;
      }
      return pending;
    },
  };
  return self;
}

/**
 * Generic high-entropy tokens (base64/hex-like, 20-128 characters) that no provider pattern covers. Many
 * identifiers are random-looking too (hashes, UUIDs, asset names), so the base confidence is below the
 * reporting threshold: a token is reported only next to a credential word ("token", "key", "secret").
 */
const TOKEN_BODY = 'A-Za-z0-9+/_.-';
const ENTROPY_TOKEN = new RegExp(
  `(?<![${TOKEN_BODY}=])[${TOKEN_BODY}]{20,128}={0,2}(?![${TOKEN_BODY}=])`,
  'g',
);
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export const ENTROPY_THRESHOLD = 3.5;
export const HEX_ENTROPY_THRESHOLD = 3.0;

function randomLooking(token: string): boolean {
  if (token.length < 20 || UUID.test(token)) return false;
  // Paths and dotted names are structured, not random.
  if (token.startsWith('/') || token.startsWith('.') || token.includes('//')) return false;
  if (!/[0-9]/.test(token) || !/[A-Za-z]/.test(token)) return false;
  if (/^[0-9a-fA-F]+$/.test(token))
    return token.length >= 32 && shannonEntropy(token) >= HEX_ENTROPY_THRESHOLD;
  return shannonEntropy(token) >= ENTROPY_THRESHOLD;
}

export function highEntropyDetector(): Detector {
  const re = new RegExp(ENTROPY_TOKEN.source, 'g');
  const maxLength = 132;
  const self: Detector = {
    id: 'high-entropy',
    entity: 'SECRET',
    maxLength,
    find(text: string, from = 0): Finding[] {
      return scanRegex(re, text, from, (m) => {
        const token = m[0].replace(/[.-]{1,4}$/, '');
        if (!randomLooking(token)) return undefined;
        return makeFinding(self, m.index, m.index + token.length, 0.3, {
          method: 'shannon-entropy',
          strength: 'heuristic',
        });
      });
    },
    pendingFrom: definePending({
      isStart: charClass(TOKEN_BODY),
      isPart: charClass(`${TOKEN_BODY}=`),
      lookahead: 0,
      maxLength,
    }),
  };
  return self;
}

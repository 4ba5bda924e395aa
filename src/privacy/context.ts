import type { EntityType, Finding } from './types.ts';

/**
 * Context words. A candidate whose surroundings name what it is ("card", "NHS number", "password") is far
 * more likely real; one next to "order", "invoice" or "version" is far more likely an identifier that only
 * looks like PII. The windows are in UTF-16 code units and a word counts only if it lies wholly inside one,
 * bounded by non-alphanumerics, so the result depends on a fixed span of text around the candidate; the
 * streaming filter relies on that.
 */
export const CONTEXT_BEFORE = 48;
export const CONTEXT_AFTER = 32;
/** Added once when any positive word is present. Sized so that a weak candidate (0.3) clears 0.5. */
export const CONTEXT_BOOST = 0.35;
/** Subtracted once when any negative word is present. Sized so that a card-like number (0.8) falls below. */
export const CONTEXT_PENALTY = 0.45;
/** Default reporting threshold on the adjusted confidence. */
export const DEFAULT_THRESHOLD = 0.5;

const NUMERIC_NEGATIVE = [
  'order',
  'invoice',
  'tracking',
  'shipment',
  'isbn',
  'serial',
  'sku',
  'ticket',
  'reference',
  'ref',
  'transaction',
  'confirmation',
  'booking',
  'routing',
  'part number',
  'model number',
];

const WORDS: Readonly<
  Record<EntityType, { readonly positive: readonly string[]; readonly negative: readonly string[] }>
> = {
  CREDIT_CARD: {
    positive: [
      'card',
      'credit',
      'debit',
      'visa',
      'mastercard',
      'amex',
      'american express',
      'discover',
      'cc',
      'cvv',
      'expiry',
      'expires',
      'payment',
      'pay',
    ],
    negative: NUMERIC_NEGATIVE,
  },
  IBAN: { positive: ['iban', 'bank', 'account', 'sepa', 'transfer', 'bic', 'swift', 'wire'], negative: [] },
  US_SSN: {
    positive: ['ssn', 'social security', 'social security number', 'ss#', 'ssn#', 'taxpayer', 'tin'],
    negative: NUMERIC_NEGATIVE,
  },
  EMAIL: { positive: ['email', 'e-mail', 'mail', 'contact', 'address'], negative: [] },
  PHONE: {
    positive: [
      'phone',
      'tel',
      'telephone',
      'mobile',
      'cell',
      'call',
      'fax',
      'whatsapp',
      'sms',
      'text',
      'contact',
      'dial',
      'reach',
    ],
    // Narrower than for other numbers: "call to order" is common next to real phone numbers.
    negative: ['isbn', 'serial', 'sku', 'tracking', 'routing', 'part number', 'model number'],
  },
  IP_ADDRESS: {
    positive: ['ip', 'ipv4', 'ipv6', 'host', 'server', 'client', 'address', 'gateway', 'subnet'],
    negative: ['version', 'ver', 'release', 'build', 'section', 'chapter'],
  },
  IN_AADHAAR: {
    positive: ['aadhaar', 'aadhar', 'uidai', 'uid', 'unique identification'],
    negative: NUMERIC_NEGATIVE,
  },
  IN_PAN: { positive: ['pan', 'permanent account number', 'income tax', 'tax'], negative: [] },
  UK_NHS: {
    positive: ['nhs', 'health service', 'patient', 'gp', 'hospital', 'chi'],
    negative: NUMERIC_NEGATIVE,
  },
  UK_NINO: { positive: ['national insurance', 'nino', 'ni number', 'ni no', 'hmrc'], negative: [] },
  CRYPTO_ADDRESS: {
    positive: [
      'bitcoin',
      'btc',
      'ethereum',
      'eth',
      'wallet',
      'address',
      'crypto',
      'usdt',
      'usdc',
      'send',
      'deposit',
    ],
    negative: [],
  },
  SECRET: {
    positive: [
      'password',
      'passwd',
      'passphrase',
      'secret',
      'token',
      'key',
      'apikey',
      'api key',
      'credential',
      'credentials',
      'bearer',
      'auth',
      'authorization',
      'access key',
      'private key',
      'session',
    ],
    negative: [],
  },
  PRIVATE_KEY: { positive: ['private key', 'ssh', 'rsa', 'pem'], negative: [] },
};

function compile(words: readonly string[]): RegExp | undefined {
  if (words.length === 0) return undefined;
  const alternatives = words.map((w) =>
    w.replace(/[.*+?^${}()|[\]\\#]/g, '\\$&').replace(/ /g, '[\\s_-]{1,2}'),
  );
  return new RegExp(`(?<![A-Za-z0-9])(?:${alternatives.join('|')})(?![A-Za-z0-9])`, 'gi');
}

const COMPILED = new Map(
  Object.entries(WORDS).map(([entity, w]) => [
    entity,
    { positive: compile(w.positive), negative: compile(w.negative) },
  ]),
);

function present(re: RegExp | undefined, text: string, finding: Finding): boolean {
  if (re === undefined) return false;
  const lo = Math.max(0, finding.start - CONTEXT_BEFORE - 1);
  const hi = Math.min(text.length, finding.end + CONTEXT_AFTER + 1);
  const window = text.slice(lo, hi);
  re.lastIndex = 0;
  for (let m = re.exec(window); m !== null; m = re.exec(window)) {
    const s = lo + m.index;
    const e = s + m[0].length;
    if (
      (s >= finding.start - CONTEXT_BEFORE && e <= finding.start) ||
      (s >= finding.end && e <= finding.end + CONTEXT_AFTER)
    ) {
      return true;
    }
  }
  return false;
}

/** The finding's confidence adjusted for the words around it, clamped to 0..1. */
export function contextConfidence(text: string, finding: Finding): number {
  const words = COMPILED.get(finding.entity);
  let c = finding.confidence;
  if (present(words?.positive, text, finding)) c += CONTEXT_BOOST;
  if (present(words?.negative, text, finding)) c -= CONTEXT_PENALTY;
  return Math.round(Math.min(1, Math.max(0, c)) * 1000) / 1000;
}

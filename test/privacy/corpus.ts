/**
 * The labelled evaluation corpus, generated deterministically from a seed. Positives: every entity type,
 * in the formats people write them, in sentences that name them ("my card", "NHS number") and in ones that
 * do not. Hard negatives: strings that look like PII and are not (order and invoice numbers, timestamps,
 * UUIDs, tracking numbers, ISBNs, versions, Luhn-invalid cards, invalid phones, bad checksums...).
 *
 * Caveat for reading the numbers: the corpus was written by the same hands as the detectors, so it
 * measures the intended behaviour and guards against regressions; it is not an independent benchmark.
 */
import type { EntityType } from '../../src/privacy/types.ts';
import * as g from './generators.ts';
import { Rng } from './generators.ts';

export interface GoldSpan {
  readonly type: EntityType;
  readonly start: number;
  readonly end: number;
}

export interface Sample {
  readonly text: string;
  readonly spans: readonly GoldSpan[];
}

type Gen = (rng: Rng) => string;

interface PositiveSpec {
  readonly value: Gen;
  /** Sentences that name the entity; `{}` is the value. */
  readonly context: readonly string[];
  /** Sentences that do not. */
  readonly neutral: readonly string[];
  /** Share of samples that use a context sentence. */
  readonly contextShare: number;
}

const NEUTRAL = ['Here it is: {}', 'Use {} for this one.', 'As discussed, {} is the one to keep.', '{}'];

const POSITIVES: Readonly<Record<EntityType, PositiveSpec>> = {
  CREDIT_CARD: {
    value: g.card,
    context: [
      'Please charge my card {} today.',
      'Credit card number: {}, exp 09/27.',
      'Visa {} was declined.',
      'Pay with {} (debit).',
    ],
    neutral: NEUTRAL,
    contextShare: 0.6,
  },
  IBAN: {
    value: g.iban,
    context: ['Send the refund to IBAN {} please.', 'Bank account: {}', 'Wire transfer to {} by Friday.'],
    neutral: NEUTRAL,
    contextShare: 0.6,
  },
  US_SSN: {
    value: g.ssn,
    context: ['My SSN is {}.', 'Social security number: {}', 'SSN# {} on file.'],
    neutral: NEUTRAL,
    contextShare: 0.7,
  },
  EMAIL: {
    value: g.email,
    context: ['Email me at {} tomorrow.', 'Contact: {}'],
    neutral: ['Reply to {} when ready.', 'cc {}', '{} wrote that yesterday.'],
    contextShare: 0.5,
  },
  PHONE: {
    value: g.phone,
    context: ['Call me on {} after six.', 'Phone: {}', 'My mobile is {}.'],
    neutral: NEUTRAL,
    contextShare: 0.6,
  },
  IP_ADDRESS: {
    value: (rng) => (rng.chance(0.6) ? g.ipv4(rng) : g.ipv6(rng)),
    context: ['The server at {} is down.', 'Client IP {} was blocked.'],
    neutral: NEUTRAL,
    contextShare: 0.5,
  },
  IN_AADHAAR: {
    value: g.aadhaar,
    context: ['My Aadhaar number is {}.', 'Aadhaar: {}', 'UIDAI record {} updated.'],
    neutral: NEUTRAL,
    contextShare: 0.8,
  },
  IN_PAN: {
    value: g.pan,
    context: ['PAN: {}', 'My PAN card number is {}.', 'Income tax PAN {} linked.'],
    neutral: NEUTRAL,
    contextShare: 0.6,
  },
  UK_NHS: {
    value: g.nhs,
    context: ['NHS number {} registered.', 'Patient NHS no. {}', 'My NHS number is {}.'],
    neutral: NEUTRAL,
    contextShare: 0.85,
  },
  UK_NINO: {
    value: g.nino,
    context: ['National Insurance number: {}', 'NINO {} on the payslip.'],
    neutral: NEUTRAL,
    contextShare: 0.6,
  },
  CRYPTO_ADDRESS: {
    value: (rng) => (rng.chance(0.5) ? g.bitcoin(rng) : g.ethereum(rng)),
    context: ['Send the BTC to {} now.', 'My wallet address is {}.', 'ETH deposit address: {}'],
    neutral: NEUTRAL,
    contextShare: 0.5,
  },
  SECRET: {
    value: (rng) => g.apiKey(rng),
    context: ['Use the API key {} for staging.', 'token: {}'],
    neutral: NEUTRAL,
    contextShare: 0.4,
  },
  PRIVATE_KEY: {
    value: (rng) => g.pem(rng),
    context: ['Here is the private key:\n{}\nKeep it safe.'],
    neutral: ['{}', 'Config:\n{}\n'],
    contextShare: 0.5,
  },
};

/** Secrets that only exist next to their name: assignments, bearer tokens, generic tokens. */
const NAMED_SECRETS: readonly ((rng: Rng) => { before: string; value: string; after: string })[] = [
  (rng) => ({ before: 'password=', value: g.password(rng), after: '' }),
  (rng) => ({ before: 'DB_PASSWORD: "', value: g.password(rng), after: '"' }),
  (rng) => ({ before: 'My password is ', value: g.password(rng), after: ' so do not share it.' }),
  (rng) => ({ before: '"client_secret": "', value: g.entropyToken(rng), after: '"' }),
  (rng) => ({ before: 'Authorization: Bearer ', value: g.jwt(rng), after: '' }),
  (rng) => ({ before: 'The session token ', value: g.entropyToken(rng), after: ' expires soon.' }),
];

/** Hard negatives: each returns a sentence that contains no PII. */
const NEGATIVES: readonly Gen[] = [
  (rng) => `Order #${rng.digits(rng.int(8, 12))} has shipped.`,
  (rng) => `Order number ${rng.pick(['4', '5'])}${rng.digits(15)} is confirmed.`,
  (rng) => `Invoice INV-${String(rng.int(2019, 2025))}-${rng.digits(5)} is overdue.`,
  (rng) =>
    `Timestamp: 2024-0${String(rng.int(1, 9))}-1${String(rng.int(0, 9))}T14:${String(rng.int(10, 59))}:05Z`,
  (rng) =>
    `The job ran at 2024-03-15 ${String(rng.int(10, 23))}:${String(rng.int(10, 59))} and at 09:00-17:00.`,
  (rng) => `Epoch ${String(1700000000 + rng.int(0, 9e7))} in logs.`,
  (rng) =>
    `Due ${String(rng.int(10, 28))}/0${String(rng.int(1, 9))}/2024 or March ${String(rng.int(1, 28))}, 2024.`,
  (rng) => `Request id ${g.uuid(rng)} failed.`,
  (rng) => `UPS tracking 1Z${rng.chars('0123456789ABCDEFGHJKLMNPRSTUVWXYZ', 16)} in transit.`,
  (rng) => `USPS tracking ${`9400${rng.digits(18)}`.match(/.{1,4}/g)?.join(' ') ?? ''} delivered.`,
  (rng) => `FedEx tracking number ${rng.digits(12)} arrives Monday.`,
  (rng) =>
    rng.pick(['ISBN 978-3-16-148410-0', 'ISBN-13: 9780306406157', 'ISBN 0-306-40615-2']) + ' is the edition.',
  (rng) => `Upgrade to v${String(rng.int(1, 9))}.${String(rng.int(0, 20))}.${String(rng.int(0, 30))} today.`,
  (rng) =>
    `Version ${String(rng.int(1, 9))}.${String(rng.int(0, 9))}.${String(rng.int(0, 9))}.${String(rng.int(0, 99))} shipped.`,
  (rng) => `Build 10.0.${String(rng.int(10000, 22000))}.${String(rng.int(100, 4000))} is current.`,
  (rng) => `The card number ${g.luhnInvalidCard(rng)} was mistyped.`,
  (rng) => `Reference ${g.luhnInvalidCard(rng).replace(/[ -]/g, '')} noted.`,
  (rng) => `Call ${g.invalidPhone(rng)} for the demo line.`,
  (rng) =>
    `Price $${String(rng.int(1, 9))},${rng.digits(3)}.${rng.digits(2)} or ${String(rng.int(1, 99))}.5% off.`,
  (rng) => `commit ${rng.bytes(20).toString('hex')} fixed it.`,
  (rng) => `sha256: ${rng.bytes(32).toString('hex')}`,
  (rng) => `Color #${rng.bytes(3).toString('hex')} and icon@2x.png in assets.`,
  (rng) =>
    `Location ${String(rng.int(10, 60))}.${rng.digits(4)}, -${String(rng.int(10, 150))}.${rng.digits(4)} on the map.`,
  (rng) => `ZIP ${rng.digits(5)}-${rng.digits(4)} is the area.`,
  (rng) =>
    `MAC ${Array.from({ length: 6 }, () => rng.bytes(1).toString('hex').toUpperCase()).join(':')} on eth0.`,
  (rng) => `Package 2.${String(rng.int(0, 20))}.0-beta.${String(rng.int(1, 9))} uses std::vector<int>.`,
  (rng) => `Invalid IP ${String(rng.int(256, 999))}.1.1.1 rejected.`,
  (rng) => `IBAN ${g.ibanBadChecksum(rng)} fails validation.`,
  (rng) =>
    `SSN ${rng.pick(['000', '666', '9' + rng.digits(2)])}-${rng.digits(2).replace('00', '12')}-${rng.digits(4).replace('0000', '1234')} is not issued.`,
  (rng) => `Routing number ${rng.digits(9)} for the bank.`,
  (rng) => `Account ${rng.digits(10)} was closed.`,
  (rng) => `Part number ${rng.digits(4)} ${rng.digits(4)} ${rng.digits(4)} in stock.`,
  (rng) =>
    `NINO ${rng.pick(['GB', 'BG', 'QQ', 'DA', 'NT'])} ${rng.digits(2)} ${rng.digits(2)} ${rng.digits(2)} ${rng.chars('ABCD', 1)} is not valid.`,
  (rng) =>
    `Code ${rng.chars('ABCDEFGHIJKLMNOPQRSTUVWXYZ', 3)}${rng.chars('DEIKMNOQRSUVWXYZ', 1)}${rng.chars('ABCDEFGHIJKLMNOPQRSTUVWXYZ', 1)}${rng.digits(4)}${rng.chars('ABCDEFGHIJKLMNOPQRSTUVWXYZ', 1)} is a product code.`,
  (rng) => `Wallet ${g.ethereumBadChecksum(rng)} has a bad checksum.`,
  (rng) => {
    const good = g.bitcoin(rng);
    const last = good.slice(-1);
    const swap = /[0-9]/.test(last) ? (last === '2' ? '3' : '2') : last === 'q' ? 'p' : 'q';
    return `Address ${good.slice(0, -1)}${swap} was mistyped.`;
  },
  (rng) =>
    rng.pick([
      'password: required',
      'token: <YOUR_TOKEN>',
      'api_key=${API_KEY}',
      'password: ********',
      'The token is valid for 24 hours.',
    ]),
  (rng) => `data:image/png;base64,${rng.bytes(60).toString('base64')}`,
  (rng) => `SKU ${rng.chars('ABCDEFGHIJKLMNOPQRSTUVWXYZ', 3)}-${rng.digits(5)}-XL and room ${rng.digits(4)}.`,
  (rng) =>
    `Population ${String(rng.int(1, 999))},${rng.digits(3)},${rng.digits(3)} in ${String(rng.int(1990, 2024))}.`,
];

function fill(template: string, value: string): { text: string; start: number; end: number } {
  const i = template.indexOf('{}');
  const text = template.slice(0, i) + value + template.slice(i + 2);
  return { text, start: i, end: i + value.length };
}

/** Wraps a sample in prose so detectors see realistic surroundings (and context windows see prose). */
function embed(rng: Rng, text: string, spans: readonly GoldSpan[]): Sample {
  const before = rng.chance(0.5) ? `${g.sentence(rng)} ` : '';
  const after = rng.chance(0.5) ? ` ${g.sentence(rng)}` : '';
  return {
    text: before + text + after,
    spans: spans.map((s) => ({ ...s, start: s.start + before.length, end: s.end + before.length })),
  };
}

export interface CorpusOptions {
  readonly seed?: number;
  readonly perType?: number;
  readonly negatives?: number;
}

export function buildCorpus(options: CorpusOptions = {}): Sample[] {
  const rng = new Rng(options.seed ?? 20240601);
  const perType = options.perType ?? 150;
  const samples: Sample[] = [];
  for (const [type, spec] of Object.entries(POSITIVES) as [EntityType, PositiveSpec][]) {
    for (let i = 0; i < perType; i++) {
      const template = rng.chance(spec.contextShare) ? rng.pick(spec.context) : rng.pick(spec.neutral);
      const f = fill(template, spec.value(rng));
      samples.push(embed(rng, f.text, [{ type, start: f.start, end: f.end }]));
    }
  }
  for (let i = 0; i < perType; i++) {
    const s = rng.pick(NAMED_SECRETS)(rng);
    const start = s.before.length;
    samples.push(
      embed(rng, s.before + s.value + s.after, [{ type: 'SECRET', start, end: start + s.value.length }]),
    );
  }
  const negatives = options.negatives ?? 2000;
  for (let i = 0; i < negatives; i++) samples.push(embed(rng, rng.pick(NEGATIVES)(rng), []));
  return samples;
}

export interface Score {
  readonly type: EntityType;
  readonly tp: number;
  readonly fp: number;
  readonly fn: number;
  readonly precision: number;
  readonly recall: number;
  readonly f1: number;
}

/** Exact-span matching: a prediction counts only if type, start and end all agree with a gold span. */
export function score(
  samples: readonly Sample[],
  predict: (text: string) => readonly GoldSpan[],
  types: readonly EntityType[],
): Score[] {
  const counts = new Map(types.map((t) => [t, { tp: 0, fp: 0, fn: 0 }]));
  for (const sample of samples) {
    const predicted = predict(sample.text);
    const key = (s: GoldSpan): string => `${s.type}:${String(s.start)}:${String(s.end)}`;
    const gold = new Set(sample.spans.map(key));
    const hit = new Set<string>();
    for (const p of predicted) {
      const c = counts.get(p.type);
      if (c === undefined) continue;
      if (gold.has(key(p))) {
        c.tp++;
        hit.add(key(p));
      } else {
        c.fp++;
      }
    }
    for (const s of sample.spans) {
      const c = counts.get(s.type);
      if (c !== undefined && !hit.has(key(s))) c.fn++;
    }
  }
  return types.map((type) => {
    const c = counts.get(type) ?? { tp: 0, fp: 0, fn: 0 };
    const precision = c.tp + c.fp === 0 ? 1 : c.tp / (c.tp + c.fp);
    const recall = c.tp + c.fn === 0 ? 1 : c.tp / (c.tp + c.fn);
    const f1 = precision + recall === 0 ? 0 : (2 * precision * recall) / (precision + recall);
    return { type, ...c, precision, recall, f1 };
  });
}

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { PrivacyEngine, defaultDetectors } from '../../src/privacy/index.ts';

/**
 * Inputs built to trigger catastrophic backtracking in naive patterns: long runs of what a detector
 * consumes, separators that almost continue a match, repeated prefixes that almost start one.
 */
const N = 100_000;
const ADVERSARIAL: Readonly<Record<string, string>> = {
  letters: 'a'.repeat(N),
  digits: '1'.repeat(N),
  'spaced digits': '1 '.repeat(N / 2),
  'dashed digits': '12-'.repeat(N / 3),
  'dotted digits': '1.'.repeat(N / 2),
  'at signs': 'a@'.repeat(N / 2),
  'dots then at': `${'a.'.repeat(N / 2)}@`,
  'domain run': `a@${'b.'.repeat(N / 2)}`,
  'plus and parens': '+1 (2) '.repeat(N / 7),
  colons: '1:'.repeat(N / 2),
  'hex and colons': 'ab:'.repeat(N / 3),
  'hex after 0x': `0x${'f'.repeat(N)}`,
  'base58 run': `1${'z'.repeat(N)}`,
  'bech32 run': `bc1${'q'.repeat(N)}`,
  'aws prefix': `AKIA${'A'.repeat(N)}`,
  'repeated AKIA': 'AKIA'.repeat(N / 4),
  'jwt prefix': `eyJ${'a'.repeat(N)}.eyJ${'b'.repeat(N)}`,
  'dotted base64': 'eyJa.'.repeat(N / 5),
  'pem header then junk': `-----BEGIN RSA PRIVATE KEY-----\n${'A'.repeat(N)}`,
  'pem lines': `-----BEGIN PRIVATE KEY-----${'\nAAAA'.repeat(N / 5)}`,
  'repeated pem headers': '-----BEGIN '.repeat(N / 11),
  'keyword runs': 'password='.repeat(N / 9),
  'keyword quotes': 'password: "'.repeat(N / 11),
  'upper alnum': 'DE89'.repeat(N / 4),
  'nino-ish': 'AB 12 '.repeat(N / 6),
  'token chars': 'aB3+/_-'.repeat(N / 7),
  'mixed separators': '4111 1111-'.repeat(N / 10),
  'digit words': 'one '.repeat(N / 4),
  'digit words and prefixes': 'four on'.repeat(N / 7),
  'digit words, commas': 'nine, '.repeat(N / 6),
  unicode: '😀é\u0000\uD800'.repeat(N / 5),
};

/** A safety net only: linear detectors finish these in milliseconds; a backtracking one would take minutes. */
const GENEROUS_MS = 5000;

describe('every detector is bounded in time on adversarial input', () => {
  for (const detector of defaultDetectors()) {
    it(detector.id, () => {
      for (const [name, input] of Object.entries(ADVERSARIAL)) {
        const t0 = performance.now();
        const findings = detector.find(input);
        const pending = detector.pendingFrom(input);
        const ms = performance.now() - t0;
        assert.ok(ms < GENEROUS_MS, `${detector.id} took ${ms.toFixed(0)} ms on ${name}`);
        for (const f of findings) assert.ok(f.start >= 0 && f.end <= input.length && f.start < f.end);
        assert.ok(pending >= input.length - detector.maxLength && pending <= input.length);
      }
    });
  }
});

const engine = new PrivacyEngine();

const piiish = fc.oneof(
  fc.string({ maxLength: 30 }),
  fc.string({ unit: 'binary', maxLength: 30 }),
  fc.stringMatching(/^[0-9 -]{1,30}$/),
  fc.stringMatching(/^[A-Za-z0-9.@+_-]{1,40}$/),
  fc.constantFrom(
    '4111 1111 1111 1111',
    'DE89 3704 0044 0532 0130 00',
    '123-45-6789',
    'a@b.io',
    '+1 415 555 2671',
    '10.0.0.1',
    'fe80::1',
    '2345 6789 0124',
    'ABCPE1234F',
    '943 476 5919',
    'AB 12 34 56 C',
    '1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa',
    '0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed',
    'AKIAIOSFODNN7EXAMPLE',
    'password=Hunter2!',
    '-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----',
    'card',
    'ssn',
    'order',
    ' ',
    '\n',
  ),
);
const texts = fc.array(piiish, { maxLength: 10 }).map((parts) => parts.join(''));

describe('properties (fast-check)', () => {
  it('detectors never throw and report in-bounds, non-overlapping, ordered findings', () => {
    const detectors = defaultDetectors();
    fc.assert(
      fc.property(texts, fc.nat(), (text, fromSeed) => {
        const from = fromSeed % (text.length + 1);
        for (const d of detectors) {
          const found = d.find(text, from);
          let last = from;
          for (const f of found) {
            assert.ok(f.start >= last && f.start < f.end && f.end <= text.length, d.id);
            assert.ok(f.confidence >= 0 && f.confidence <= 1);
            last = f.end;
          }
          const p = d.pendingFrom(text);
          assert.ok(p <= text.length && p >= text.length - d.maxLength);
        }
      }),
      { numRuns: 400, seed: 11 },
    );
  });

  it('engine findings are resolved: in bounds, sorted, non-overlapping, above the threshold', () => {
    fc.assert(
      fc.property(texts, (text) => {
        const found = engine.detect(text);
        for (let i = 0; i < found.length; i++) {
          const f = found[i]!;
          assert.ok(f.start >= 0 && f.end <= text.length && f.start < f.end);
          assert.ok(f.confidence >= engine.threshold);
          if (i > 0) assert.ok(found[i - 1]!.end <= f.start);
        }
        const applied = engine.apply(text, { defaultAction: 'mask' });
        assert.equal(applied.text.length, text.length);
      }),
      { numRuns: 400, seed: 12 },
    );
  });

  it('redaction and pseudonym markers are never detected again', () => {
    const policy = {
      actions: { EMAIL: 'pseudonymize', PHONE: 'pseudonymize' },
      pseudonymKey: Buffer.alloc(16, 1),
    } as const;
    fc.assert(
      fc.property(texts, (text) => {
        const once = engine.apply(text, policy).text;
        const markers = [...once.matchAll(/\[REDACTED:[A-Z_]+\]|<[A-Z_]+:[0-9a-f]{8}>/g)].map((m) => [
          m.index,
          m.index + m[0].length,
        ]);
        for (const f of engine.detect(once)) {
          for (const [s, e] of markers) assert.ok(f.end <= s! || f.start >= e!, JSON.stringify(once));
        }
      }),
      { numRuns: 300, seed: 13 },
    );
  });
});

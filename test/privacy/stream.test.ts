import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  PrivacyEngine,
  PrivacyStream,
  minimumHoldBack,
  type Detector,
  type Finding,
  type Policy,
} from '../../src/privacy/index.ts';
import { charClass } from '../../src/privacy/scan.ts';
import * as g from './generators.ts';
import { Rng } from './generators.ts';

const engine = new PrivacyEngine();
const key = Buffer.alloc(32, 3);
const POLICIES: readonly Policy[] = [
  {},
  { defaultAction: 'mask' },
  { defaultAction: 'pseudonymize', pseudonymKey: key },
];

interface StreamRun {
  readonly text: string;
  readonly findings: readonly Finding[];
  readonly maxHeld: number;
}

function runStream(
  chunks: readonly string[],
  policy: Policy,
  e = engine,
): StreamRun & { stream: PrivacyStream } {
  const stream = new PrivacyStream(e, policy);
  let text = '';
  let maxHeld = 0;
  for (const c of chunks) {
    text += stream.push(c);
    maxHeld = Math.max(maxHeld, stream.heldBack);
  }
  text += stream.end();
  return { text, findings: stream.findings, maxHeld, stream };
}

function assertSameAsApply(input: string, chunks: readonly string[], policy: Policy): void {
  const expected = engine.apply(input, policy);
  const got = runStream(chunks, policy);
  assert.equal(got.text, expected.text, JSON.stringify(chunks));
  assert.deepEqual(got.findings, expected.findings, JSON.stringify(chunks));
  assert.ok(got.maxHeld <= got.stream.maxHoldBack);
}

const rng = new Rng(42);
const PII_SAMPLES: readonly string[] = [
  `My card is ${g.card(rng)}, exp 12/26. Email ${g.email(rng)} or call ${g.phone(rng)}.`,
  `IBAN ${g.iban(rng, true)}; SSN ${g.ssn(rng, '-')}; NHS number ${g.nhs(rng, true)}; NINO ${g.nino(rng, true)}.`,
  `Aadhaar ${g.aadhaar(rng, true)} PAN ${g.pan(rng)} host 10.0.0.1 and fe80::1ff:fe23:4567:890a done`,
  `Send to ${g.bitcoin(rng)} or ${g.ethereum(rng, true)} now`,
  `key ${g.apiKey(rng)} password="${g.password(rng)}" Bearer ${g.jwt(rng)} end`,
  `config:\n${g.pem(rng, 'EC ')}\nthanks 😀 é`,
  'Card: four one one one, one one one one, one one one one, one one one one. SSN five three six two two one two three four!',
];

describe('PrivacyStream equals one-shot apply', () => {
  it('for every split point of strings containing PII, for every action', () => {
    for (const input of PII_SAMPLES) {
      for (const policy of POLICIES) {
        for (let i = 0; i <= input.length; i++)
          assertSameAsApply(input, [input.slice(0, i), input.slice(i)], policy);
      }
    }
  });

  it('for one code unit at a time', () => {
    for (const input of PII_SAMPLES) assertSameAsApply(input, [...input.split('')], {});
  });

  it('for random chunkings of random texts mixing prose, PII and near-misses (property)', () => {
    const piece = fc.oneof(
      fc.constantFrom(...PII_SAMPLES),
      fc.constantFrom(
        '4111 1111 1111 1112',
        '555-123-4567',
        '2024-03-15 14:30',
        'v1.2.3.4',
        'order 4111111111111111',
        'one two three ',
        'four one one one one one one one one one one one one one one ',
        'phone ',
        '123-45-6789',
        'a@b',
        '@example.com',
        '-----BEGIN ',
        'password: ',
        '"',
        'token ',
        '0x',
        '+1 ',
        'NHS ',
        'jäne@exämple.de',
        'δοκιμή@παράδειγμα.δοκιμή',
      ),
      fc.string({ maxLength: 12 }),
      fc.constantFrom(' ', '\n', '. ', ', ', '-', ':', '@', '(', ')', '+'),
      // Characters the detectors see folded (fold.ts): invisible, compatibility forms, other scripts,
      // expansions to several characters, surrogate halves.
      fc.constantFrom(
        '\u200b',
        '\u00ad',
        '\u00a0',
        '\u2013',
        '４',
        '𝟏',
        '४',
        '\u0301',
        '⑴',
        '\ufdfa',
        '\ud83d',
        '\ude00',
        '\u0430',
        '\u0391',
        '\u0585',
      ),
      fc.constantFrom(...PII_SAMPLES).map((s) => Array.from(s).join('\u200b')),
    );
    const text = fc.array(piece, { maxLength: 12 }).map((parts) => parts.join(''));
    const cuts = fc.array(fc.nat({ max: 1000 }), { maxLength: 12 });
    fc.assert(
      fc.property(text, cuts, fc.constantFrom(...POLICIES), (input, points, policy) => {
        const sorted = [...new Set(points.map((p) => p % (input.length + 1)))].sort((a, b) => a - b);
        const chunks: string[] = [];
        let prev = 0;
        for (const p of sorted) {
          chunks.push(input.slice(prev, p));
          prev = p;
        }
        chunks.push(input.slice(prev));
        assertSameAsApply(input, chunks, policy);
      }),
      { numRuns: 300, seed: 7 },
    );
  });
});

describe('PrivacyStream hold-back', () => {
  it('releases plain prose up to the last unfinished word at once', () => {
    const s = new PrivacyStream(engine, {});
    assert.equal(s.push('Hello '), 'Hello ');
    assert.equal(s.push('wor'), '');
    assert.equal(s.push('ld, how are you'), 'world, how are ');
    assert.equal(s.push('? '), 'you? ');
    assert.equal(s.heldBack, 0);
    assert.equal(s.end(), '');
  });

  it('holds a digit run until it can no longer grow, then redacts it', () => {
    const s = new PrivacyStream(engine, {});
    let out = s.push('My card is 4111 1111');
    assert.equal(out, 'My card is ');
    out += s.push(' 1111 1111');
    out += s.push(', thanks, that was all I needed to say.');
    out += s.end();
    assert.equal(out, 'My card is [REDACTED:CREDIT_CARD], thanks, that was all I needed to say.');
  });

  it('never holds back more than the bound, derived from the selected detectors', () => {
    const text = PII_SAMPLES.join(' ').repeat(3);
    const run = runStream(text.match(/[\s\S]{1,7}/g) ?? [], {});
    assert.ok(run.maxHeld <= minimumHoldBack(engine));
    const small = new PrivacyEngine({
      detectors: engine.detectors.filter((d) => !['private-key', 'jwt'].includes(d.id)),
    });
    assert.ok(minimumHoldBack(small) < 512);
    assert.throws(() => new PrivacyStream(small, {}, { maxHoldBack: 64 }), RangeError);
    assert.equal(new PrivacyStream(small, {}, { maxHoldBack: 4096 }).maxHoldBack, 4096);
  });

  it('does not split a surrogate pair', () => {
    const s = new PrivacyStream(engine, {});
    const emoji = '😀';
    assert.equal(s.push(`ok ${emoji.charAt(0)}`), 'ok ');
    assert.equal(s.push(`${emoji.charAt(1)} `), `${emoji} `);
  });
});

describe('PrivacyStream blocking', () => {
  it('stops at a blocking finding and only ever released a prefix of the redacted output', () => {
    const input = `Intro text. Email a@b.io.\n${g.pem(new Rng(5))}\nAfter the key.`;
    const redacted = engine.apply(input, {}).text;
    for (let i = 0; i <= input.length; i += 7) {
      const s = new PrivacyStream(engine, { actions: { PRIVATE_KEY: 'block' } });
      let out = s.push(input.slice(0, i)) + s.push(input.slice(i));
      assert.equal(s.push(' more'), '');
      out += s.end();
      assert.equal(s.blocked, true);
      assert.equal(s.blockReason, 'policy');
      assert.ok(redacted.startsWith(out), out);
      assert.ok(!out.includes('PRIVATE KEY'));
    }
  });

  it('fails closed with reason overflow when overlapping candidates chain past the bound', () => {
    const chain = (id: string, re: RegExp): Detector => {
      const self: Detector = {
        id,
        entity: 'SECRET',
        maxLength: 4,
        find(text: string, from = 0): Finding[] {
          const out: Finding[] = [];
          const r = new RegExp(re.source, 'g');
          r.lastIndex = from;
          for (let m = r.exec(text); m !== null; m = r.exec(text)) {
            out.push({
              detector: id,
              entity: 'SECRET',
              start: m.index,
              end: m.index + 4,
              confidence: 0.9,
              validation: { method: 'test', strength: 'heuristic' },
            });
          }
          return out;
        },
        pendingFrom(text: string): number {
          const isDigit = charClass('0-9');
          let i = text.length;
          while (i > Math.max(0, text.length - 4) && isDigit(text.charCodeAt(i - 1))) i--;
          return i;
        },
      };
      return self;
    };
    const e = new PrivacyEngine({ detectors: [chain('a', /0123/), chain('b', /2301/)] });
    const s = new PrivacyStream(e, {});
    let maxHeld = 0;
    for (let i = 0; i < 100 && !s.blocked; i++) {
      s.push('0123');
      maxHeld = Math.max(maxHeld, s.heldBack);
    }
    assert.equal(s.blockReason, 'overflow');
    assert.ok(maxHeld <= s.maxHoldBack);
  });

  it('rejects use after end', () => {
    const s = new PrivacyStream(engine, {});
    s.end();
    assert.throws(() => s.push('x'));
    assert.throws(() => s.end());
  });
});

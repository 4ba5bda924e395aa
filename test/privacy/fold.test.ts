import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { PrivacyEngine, PrivacyStream } from '../../src/privacy/index.ts';
import { FoldedText } from '../../src/privacy/fold.ts';

const engine = new PrivacyEngine();
const key = Buffer.alloc(32, 9);

const CARD = '4111111111111111';
const grouped = (digits: string, sep: string) => digits.match(/.{4}/g)?.join(sep) ?? digits;
const between = (value: string, sep: string) => Array.from(value).join(sep);
const fullwidth = (s: string) =>
  s.replace(/[0-9A-Za-z@.]/g, (c) => String.fromCodePoint((c.codePointAt(0) ?? 0) + 0xfee0));
const mathBold = (digits: string) =>
  digits.replace(/[0-9]/g, (d) => String.fromCodePoint(0x1d7ce + Number(d)));
const devanagari = (digits: string) =>
  digits.replace(/[0-9]/g, (d) => String.fromCodePoint(0x966 + Number(d)));

/** Spellings of PII that read the same to a person and that an ASCII pattern did not match. */
const EVASIONS: Readonly<Record<string, { entity: string; text: string }>> = {
  'zero-width space between every digit': { entity: 'CREDIT_CARD', text: between(CARD, '\u200b') },
  'zero-width joiner between groups': { entity: 'CREDIT_CARD', text: grouped(CARD, '\u200d') },
  'soft hyphens between groups': { entity: 'CREDIT_CARD', text: grouped(CARD, '\u00ad') },
  'word joiners and BOMs': { entity: 'CREDIT_CARD', text: between(CARD, '\u2060\ufeff') },
  'tag characters': { entity: 'CREDIT_CARD', text: between(CARD, '\u{e0041}') },
  'variation selectors': { entity: 'CREDIT_CARD', text: between(CARD, '\ufe0f') },
  'bidi controls': { entity: 'CREDIT_CARD', text: grouped(CARD, '\u202e\u202c') },
  'no-break spaces': { entity: 'CREDIT_CARD', text: grouped(CARD, '\u00a0') },
  'narrow no-break and ideographic spaces': { entity: 'CREDIT_CARD', text: grouped(CARD, '\u202f') },
  'en dashes': { entity: 'CREDIT_CARD', text: grouped(CARD, '\u2013') },
  'minus signs': { entity: 'CREDIT_CARD', text: grouped(CARD, '\u2212') },
  'fullwidth digits': { entity: 'CREDIT_CARD', text: grouped(fullwidth(CARD), ' ') },
  'mathematical bold digits': { entity: 'CREDIT_CARD', text: grouped(CARD, ' ').replace(/\d/g, mathBold) },
  'Devanagari digits': { entity: 'CREDIT_CARD', text: grouped(CARD, ' ').replace(/\d/g, devanagari) },
  'combining marks on digits': { entity: 'CREDIT_CARD', text: between(CARD, '\u0301') },
  'keycap marks': { entity: 'CREDIT_CARD', text: `${between(CARD, '\u20e3')}\u20e3` },
  'SSN with zero-width spaces': { entity: 'US_SSN', text: `536\u200b-\u200b22\u200b-\u200b1234` },
  'fullwidth e-mail': { entity: 'EMAIL', text: fullwidth('jane.doe@example.com') },
  'e-mail with a zero-width space': { entity: 'EMAIL', text: 'jane.doe\u200b@example.com' },
  'e-mail with Cyrillic look-alike letters': { entity: 'EMAIL', text: 'j\u0430ne.d\u043ee@ex\u0430mple.com' },
  'access key id in Cyrillic and Greek capitals': {
    entity: 'SECRET',
    text: '\u0410\u041a\u0406\u0391IOSFODNN7EX\u0391MPLE',
  },
  'IBAN with Greek capitals': { entity: 'IBAN', text: 'G\u039282 WEST 1234 5698 7654 32' },
  'IBAN with no-break spaces': {
    entity: 'IBAN',
    text: 'GB82\u00a0WEST\u00a01234\u00a05698\u00a07654\u00a032',
  },
};

describe('PII spelled with invisible, compatibility or other-script characters is detected', () => {
  for (const [name, { entity, text }] of Object.entries(EVASIONS)) {
    it(name, () => {
      const what: Partial<Record<string, string>> = { EMAIL: 'e-mail', US_SSN: 'ssn', SECRET: 'aws key' };
      const input = `my ${what[entity] ?? 'payment details'}: ${text} thanks`;
      const r = engine.apply(input, {});
      assert.deepEqual(
        r.findings.map((f) => f.entity),
        [entity],
        `${name}: ${JSON.stringify(input)}`,
      );
      const [f] = r.findings;
      // The finding covers the whole spelled value, invisible characters inside it included.
      assert.equal(input.slice(f?.start, f?.end), text);
      assert.equal(r.text, `${input.slice(0, f?.start)}[REDACTED:${entity}] thanks`);
      // Streaming, one code unit at a time, gives the same output.
      const stream = new PrivacyStream(engine, {});
      let out = '';
      for (const c of input) out += stream.push(c);
      out += stream.end();
      assert.equal(out, r.text);
    });
  }

  it('masks what the value reads as, and pseudonymizes it like its plain spelling', () => {
    const masked = engine.apply(`card ${grouped(fullwidth(CARD), '\u00a0')}.`, { defaultAction: 'mask' });
    assert.equal(masked.text, 'card **** **** **** 1111.');
    const policy = { defaultAction: 'pseudonymize' as const, pseudonymKey: key };
    const plain = engine.apply(`card ${CARD}`, policy).text;
    for (const spelled of [between(CARD, '\u200b'), mathBold(CARD), devanagari(CARD)]) {
      assert.equal(engine.apply(`card ${spelled}`, policy).text, plain);
    }
  });

  it('leaves text in other scripts without PII alone', () => {
    for (const text of [
      'नमस्ते, आपका ऑर्डर ४ दिनों में पहुँचेगा।',
      '会议在３月１５日下午２点举行。',
      'Café au lait — 2 croissants, s’il vous plaît ☕️',
      'Привет! Заказ № 12 будет доставлен завтра, с уважением, команда поддержки.',
      'Καλημέρα σας, η παραγγελία σας θα φτάσει σε 3 ημέρες.',
      'Բարև ձեզ, ձեր պատվերը կհասնի վաղը։',
      '👨‍👩‍👧‍👦 family emoji and 🇮🇳 flag',
    ]) {
      const r = engine.apply(text, {});
      assert.deepEqual(r.findings, [], text);
      assert.equal(r.text, text);
    }
  });
});

describe('FoldedText', () => {
  it('is the text itself for ASCII', () => {
    const f = FoldedText.of('abc 123');
    assert.equal(f.text, 'abc 123');
    assert.equal(f.sourceStart(3), 3);
    assert.equal(f.sourceEnd(3), 3);
    assert.equal(f.foldedIndex(5), 5);
  });

  it('maps folded spans back to whole source code points', () => {
    const source = 'a\u200b𝟏⑴b';
    const f = FoldedText.of(source);
    assert.equal(f.text, 'a1(1)b');
    // '1' from the surrogate pair at 2..4; '(1)' all from U+2474 at 4.
    assert.deepEqual([f.sourceStart(1), f.sourceEnd(2)], [2, 4]);
    assert.deepEqual([f.sourceStart(3), f.sourceEnd(4)], [4, 5]);
    assert.equal(f.sourceEnd(1), 2, 'up to the next folded code point, over the zero-width space');
    assert.equal(f.sourceStart(6), source.length);
    assert.equal(f.foldedIndex(1), 1, 'the zero-width space folds to nothing: the next folded index');
    assert.equal(f.isBoundary(3), false);
    assert.equal(f.isBoundary(5), true);
  });

  it('folds lone surrogates to themselves', () => {
    assert.equal(FoldedText.of('1\ud800').text, '1\ud800');
    assert.equal(FoldedText.of('\udc00x').text, '\udc00x');
  });

  it('folds a concatenation into the concatenation of the folds (property)', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 40 }), fc.nat(), (s, at) => {
        // Split at a code point boundary: a surrogate pair split in two folds as two lone halves.
        let i = at % (s.length + 1);
        const code = s.charCodeAt(i - 1);
        if (i > 0 && i < s.length && code >= 0xd800 && code <= 0xdbff) i--;
        assert.equal(
          FoldedText.of(s).text,
          FoldedText.of(s.slice(0, i)).text + FoldedText.of(s.slice(i)).text,
        );
        const f = FoldedText.of(s);
        for (let k = 0; k < f.text.length; k++) {
          assert.ok(f.sourceStart(k) < f.sourceEnd(k + 1) && f.sourceEnd(k + 1) <= s.length);
          if (k > 0) assert.ok(f.sourceStart(k - 1) <= f.sourceStart(k));
        }
      }),
      { numRuns: 500 },
    );
  });
});

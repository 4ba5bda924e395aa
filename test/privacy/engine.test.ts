import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createSecretKey, randomBytes } from 'node:crypto';
import { inspect } from 'node:util';
import {
  CompiledPolicy,
  PrivacyEngine,
  creditCardDetector,
  emailDetector,
  type Detector,
  type Finding,
} from '../../src/privacy/index.ts';
import { scanRegex, makeFinding, definePending, charClass } from '../../src/privacy/scan.ts';

const engine = new PrivacyEngine();
const key = Buffer.alloc(32, 7);

describe('PrivacyEngine.apply actions', () => {
  const text = 'Card 4111 1111 1111 1111, mail Jane.Doe@Example.com, call +1 415 555 2671.';

  it('redacts with a typed marker', () => {
    const r = engine.apply(text, {});
    assert.equal(r.text, 'Card [REDACTED:CREDIT_CARD], mail [REDACTED:EMAIL], call [REDACTED:PHONE].');
    assert.equal(r.blocked, false);
    assert.deepEqual(
      r.findings.map((f) => [f.entity, f.action]),
      [
        ['CREDIT_CARD', 'redact'],
        ['EMAIL', 'redact'],
        ['PHONE', 'redact'],
      ],
    );
  });

  it('masks all but the last four of cards and phones and keeps separators', () => {
    const r = engine.apply('4111111111111111 / 4111 1111 1111 1111 / +1 415 555 2671 / a@b.io', {
      defaultAction: 'mask',
    });
    assert.equal(r.text, '************1111 / **** **** **** 1111 / +* *** *** 2671 / *@*.**');
  });

  it('pseudonymizes with a keyed, stable, spelling-independent HMAC', () => {
    const policy = { defaultAction: 'pseudonymize', pseudonymKey: key } as const;
    const a = engine.apply('card 4111 1111 1111 1111 and 4111-1111-1111-1111', policy).text;
    const pseudonym = /<CREDIT_CARD:([0-9a-f]{8})>/.exec(a)?.[1];
    assert.ok(pseudonym !== undefined);
    assert.equal(a, `card <CREDIT_CARD:${pseudonym}> and <CREDIT_CARD:${pseudonym}>`);
    assert.equal(
      new PrivacyEngine().apply('card 4111111111111111', policy).text,
      `card <CREDIT_CARD:${pseudonym}>`,
    );
    const phones = engine.apply('tel (415) 555-2671 or +1 415 555 2671', policy).text;
    const ids = [...phones.matchAll(/<PHONE:([0-9a-f]{8})>/g)].map((m) => m[1]);
    assert.equal(ids.length, 2);
    assert.equal(ids[0], ids[1]);
    const emails = engine.apply('Jane.Doe@Example.com jane.doe@example.com', policy).text.split(' ');
    assert.equal(emails[0], emails[1]);
    const other = engine.apply('card 4111111111111111', {
      ...policy,
      pseudonymKey: Buffer.alloc(32, 8),
    }).text;
    assert.notEqual(other, `card <CREDIT_CARD:${pseudonym}>`);
    const longer = engine.apply('card 4111111111111111', { ...policy, pseudonymLength: 16 }).text;
    assert.match(longer, new RegExp(`^card <CREDIT_CARD:${pseudonym}[0-9a-f]{8}>$`));
  });

  it('accepts a secret KeyObject and rejects short, missing or non-secret keys', () => {
    const viaKeyObject = engine.apply('a@b.io', {
      defaultAction: 'pseudonymize',
      pseudonymKey: createSecretKey(key),
    });
    assert.equal(
      viaKeyObject.text,
      engine.apply('a@b.io', { defaultAction: 'pseudonymize', pseudonymKey: key }).text,
    );
    assert.throws(() => engine.apply('x', { defaultAction: 'pseudonymize' }), TypeError);
    assert.throws(
      () => engine.apply('x', { defaultAction: 'pseudonymize', pseudonymKey: Buffer.alloc(8) }),
      RangeError,
    );
    assert.throws(
      () => engine.apply('x', { actions: { EMAIL: 'pseudonymize' }, pseudonymKey: randomBytes(4) }),
      RangeError,
    );
    assert.throws(() => engine.apply('x', { pseudonymLength: 4 }), RangeError);
  });

  it('never exposes the key through inspection or serialisation', () => {
    const secret = Buffer.from('0123456789abcdef0123456789abcdef');
    const compiled = new CompiledPolicy({ defaultAction: 'pseudonymize', pseudonymKey: secret });
    for (const rendering of [inspect(compiled, { showHidden: true, depth: 5 }), JSON.stringify(compiled)]) {
      assert.ok(!rendering.includes('0123456789abcdef'));
      assert.ok(!rendering.includes(secret.toString('hex')));
    }
  });

  it('blocks the whole output when a finding has the block action', () => {
    const r = engine.apply(
      'here -----BEGIN PRIVATE KEY-----\nMIIBVQ==\n-----END PRIVATE KEY----- and a@b.io',
      {
        actions: { PRIVATE_KEY: 'block' },
      },
    );
    assert.equal(r.blocked, true);
    assert.equal(r.text, '');
    assert.deepEqual(
      r.findings.map((f) => [f.entity, f.action]),
      [
        ['PRIVATE_KEY', 'block'],
        ['EMAIL', 'redact'],
      ],
    );
  });

  it('returns findings without matched values', () => {
    const text = 'SSN 123-45-6789, card 4111111111111111, password=Hunter2!';
    const r = engine.apply(text, {});
    const serialised = JSON.stringify(r.findings);
    for (const value of ['123-45-6789', '4111111111111111', 'Hunter2!'])
      assert.ok(!serialised.includes(value));
    for (const f of r.findings) {
      assert.deepEqual(Object.keys(f).sort(), [
        'action',
        'confidence',
        'detector',
        'end',
        'entity',
        'start',
        'validation',
      ]);
    }
  });

  it('leaves text without findings untouched', () => {
    const prose = 'The quick brown fox jumps over the lazy dog in 2024, version 1.2.3.';
    assert.deepEqual(engine.apply(prose, {}), { text: prose, findings: [], blocked: false });
  });
});

describe('confidence and context', () => {
  it('reports weak formats only next to a context word', () => {
    assert.equal(engine.detect('reference 123456789').length, 0);
    assert.equal(engine.detect('my ssn is 123456789')[0]?.entity, 'US_SSN');
    assert.equal(
      engine.detect('see 943 476 5919').find((f) => f.entity === 'UK_NHS'),
      undefined,
    );
    assert.equal(engine.detect('NHS number 943 476 5919')[0]?.entity, 'UK_NHS');
  });

  it('suppresses card-like numbers next to identifier words', () => {
    assert.equal(engine.detect('Order number 4111111111111111 shipped').length, 0);
    assert.equal(engine.detect('Paid with card 4111111111111111').length, 1);
    assert.equal(engine.detect('version 10.1.2.3 released').length, 0);
  });

  it('respects a custom threshold', () => {
    const strict = new PrivacyEngine({ threshold: 0.9 });
    assert.deepEqual(
      strict.detect('DE89370400440532013000 and 10.0.0.1').map((f) => f.entity),
      ['IBAN'],
    );
    assert.throws(() => new PrivacyEngine({ threshold: 2 }), RangeError);
    assert.throws(() => new PrivacyEngine({ detectors: [] }), RangeError);
    assert.throws(() => new PrivacyEngine({ detectors: [emailDetector(), emailDetector()] }), RangeError);
  });
});

/** A detector that reports every match of `re` with a fixed confidence. */
function fixed(id: string, re: RegExp, confidence: number): Detector {
  const self: Detector = {
    id,
    entity: 'SECRET',
    maxLength: 16,
    find: (text: string, from = 0): Finding[] =>
      scanRegex(new RegExp(re.source, 'g'), text, from, (m) =>
        makeFinding(self, m.index, m.index + m[0].length, confidence, {
          method: 'test',
          strength: 'heuristic',
        }),
      ),
    pendingFrom: definePending({
      isStart: charClass('a-z'),
      isPart: charClass('a-z'),
      lookahead: 1,
      maxLength: 16,
    }),
  };
  return self;
}

describe('overlap resolution', () => {
  it('prefers higher confidence, then the longer span, then the earlier start, then detector order', () => {
    const spans = (e: PrivacyEngine, t: string): string[] =>
      e.detect(t).map((f) => `${f.detector}:${t.slice(f.start, f.end)}`);
    const text = 'xx abcdef yy';
    assert.deepEqual(
      spans(new PrivacyEngine({ detectors: [fixed('a', /abc/, 0.6), fixed('b', /abcdef/, 0.9)] }), text),
      ['b:abcdef'],
    );
    assert.deepEqual(
      spans(new PrivacyEngine({ detectors: [fixed('a', /abc/, 0.9), fixed('b', /abcdef/, 0.6)] }), text),
      ['a:abc'],
    );
    assert.deepEqual(
      spans(new PrivacyEngine({ detectors: [fixed('a', /abc/, 0.7), fixed('b', /abcdef/, 0.7)] }), text),
      ['b:abcdef'],
    );
    assert.deepEqual(
      spans(new PrivacyEngine({ detectors: [fixed('a', /cde/, 0.7), fixed('b', /bcd/, 0.7)] }), text),
      ['b:bcd'],
    );
    assert.deepEqual(
      spans(new PrivacyEngine({ detectors: [fixed('a', /bcd/, 0.7), fixed('b', /bcd/, 0.7)] }), text),
      ['a:bcd'],
    );
  });

  it('resolves a card number that is also an address local part to one finding, whatever the detector order', () => {
    const text = 'x 4111111111111111@example.com y';
    const one = new PrivacyEngine({ detectors: [creditCardDetector(), emailDetector()] }).detect(text);
    const two = new PrivacyEngine({ detectors: [emailDetector(), creditCardDetector()] }).detect(text);
    assert.deepEqual(one, two);
    assert.equal(one.length, 1);
  });
});

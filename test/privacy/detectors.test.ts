import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  aadhaarDetector,
  apiKeyDetector,
  bitcoinDetector,
  creditCardDetector,
  emailDetector,
  ethereumDetector,
  highEntropyDetector,
  ibanDetector,
  ipv4Detector,
  ipv6Detector,
  jwtDetector,
  nhsDetector,
  ninoDetector,
  panDetector,
  phoneDetector,
  privateKeyDetector,
  secretAssignmentDetector,
  spelledCardDetector,
  spelledSsnDetector,
  usSsnDetector,
  type Detector,
} from '../../src/privacy/index.ts';
import * as g from './generators.ts';
import { Rng } from './generators.ts';

/** The exact substrings a detector reports in `text`. */
function spans(d: Detector, text: string): string[] {
  return d.find(text).map((f) => text.slice(f.start, f.end));
}

function assertFinds(d: Detector, text: string, expected: readonly string[]): void {
  assert.deepEqual(spans(d, text), expected, text);
}

describe('credit card detector', () => {
  const d = creditCardDetector();
  it('finds Luhn-valid numbers in printed groupings and reports the brand', () => {
    assertFinds(d, 'card 4111 1111 1111 1111, exp 12/26', ['4111 1111 1111 1111']);
    assertFinds(d, 'amex 3782-822463-10005.', ['3782-822463-10005']);
    assertFinds(d, 'mc 5555555555554444', ['5555555555554444']);
    assert.equal(d.find('5555555555554444')[0]?.validation.detail, 'mastercard');
    assert.equal(d.find('378282246310005')[0]?.validation.detail, 'amex');
  });
  it('finds numbers grouped with dots, and not decimals or dotted runs longer than a card', () => {
    assertFinds(d, 'card 4111.1111.1111.1111, exp 12/26', ['4111.1111.1111.1111']);
    assertFinds(d, 'amex 3782.822463.10005.', ['3782.822463.10005']);
    assertFinds(d, 'total 4111111111111111.25', []);
    assertFinds(d, '4111.1111.1111.1111.1111', []);
    assertFinds(d, '4111.1111 1111-1111', []);
  });
  it('rejects Luhn failures, longer runs and mixed separators', () => {
    assertFinds(d, '4111 1111 1111 1112', []);
    assertFinds(d, '4111 1111 1111 1111 1111', []);
    assertFinds(d, '4111-1111 1111-1111', []);
    assertFinds(d, 'x4111111111111111', []);
    assertFinds(d, '12345678901234567890', []);
  });
  it('gives Luhn-valid numbers outside every IIN range a confidence below the threshold', () => {
    const f = d.find('0000 0000 0000 0000')[0];
    assert.ok(f !== undefined && f.confidence < 0.5);
  });
  it('finds every generated card exactly', () => {
    const rng = new Rng(1);
    for (let i = 0; i < 200; i++) {
      const c = g.card(rng);
      assertFinds(d, `pay ${c} now`, [c]);
    }
  });
});

describe('spelled-out numbers', () => {
  const spell = (digits: string, sep = ' ') =>
    Array.from(
      digits,
      (d) => ['zero', 'one', 'two', 'three', 'four', 'five', 'six', 'seven', 'eight', 'nine'][Number(d)],
    ).join(sep);
  const card = spelledCardDetector();
  const ssn = spelledSsnDetector();
  it('reads a card number written digit by digit in words, in any case and with commas or hyphens', () => {
    const words = spell('4111111111111111');
    assertFinds(card, `the card is ${words}, expiring soon`, [words]);
    const grouped = 'Four One One One, one one one one, one one one one, one one one one';
    assertFinds(card, `card: ${grouped}.`, [grouped]);
    assertFinds(card, spell('378282246310005', '-'), [spell('378282246310005', '-')]);
    assert.equal(card.find(words)[0]?.validation.detail, 'visa, spelled');
    // Its pseudonym and canonical form are those of the digits.
    assert.equal(card.canonical?.(grouped), '4111111111111111');
    assertFinds(card, spell('5105105105105100').replace(/zero/g, 'oh'), [
      spell('5105105105105100').replace(/zero/g, 'oh'),
    ]);
  });
  it('keeps only numbers that pass the checks, and words that are whole', () => {
    assertFinds(card, spell('4111111111111112'), []); // Luhn
    assertFinds(card, spell('1111111111111117'), []); // no issuer range
    assertFinds(card, `some${spell('4111111111111111')}`, []);
    assertFinds(card, `${spell('4111111111111111')}teen`, []);
    assertFinds(card, 'I have two cats, one dog and three fish; four of them sleep, one eats.', []);
    assertFinds(card, spell('4111111111111111', '; '), []);
    // A word ending like a digit word before the run ("phone") does not hide it; a longer run is another number.
    assertFinds(card, `phone ${spell('4111111111111111')}`, [spell('4111111111111111')]);
    assertFinds(card, `one ${spell('4111111111111111')}`, []);
  });
  it('reads a spelled SSN within the SSA ranges', () => {
    assertFinds(ssn, `my ssn is ${spell('536221234')}.`, [spell('536221234')]);
    assertFinds(ssn, spell('666221234'), []);
    assertFinds(ssn, spell('078051120'), []);
    assertFinds(ssn, spell('5362212345'), []);
  });
  it('finds exactly what a regex over whole runs finds (property)', () => {
    const WORD = '(?:zero|one|two|three|four|five|six|seven|eight|nine|oh)';
    const SEP = '(?:, ?| |-)';
    const oracle = (text: string, min: number, max: number, valid: (d: string) => boolean) => {
      const re = new RegExp(
        `(?<![A-Za-z])(?<!(?<![A-Za-z])${WORD}${SEP})(?:${WORD}${SEP}){${min - 1},${max - 1}}${WORD}(?![A-Za-z]|${SEP}${WORD}(?![A-Za-z]))`,
        'gi',
      );
      const found: string[] = [];
      for (let m = re.exec(text); m !== null; m = re.exec(text)) {
        if (valid(card.canonical?.(m[0]) ?? '')) found.push(m[0]);
        else re.lastIndex = m.index + 1;
      }
      return found;
    };
    const validCard = (d: string) => spelledCardDetector().find(spell(d)).length === 1;
    const piece = fc.oneof(
      fc.constantFrom('zero', 'one', 'Four', 'oh', 'nine', 'ONE', 'phone', 'on', 'ones', 'x'),
      fc.constantFrom(' ', ', ', ',', '-', '  ', '. ', ' ,'),
      fc.constant(spell('4111111111111111')),
      fc.constant(spell('536221234')),
    );
    fc.assert(
      fc.property(fc.array(piece, { maxLength: 40 }), (parts) => {
        const text = parts.join('');
        assert.deepEqual(spans(card, text), oracle(text, 13, 19, validCard));
        assert.deepEqual(
          spans(ssn, text),
          oracle(text, 9, 9, (d) => spelledSsnDetector().find(spell(d)).length === 1),
        );
      }),
      { numRuns: 500 },
    );
  });

  it('holds back only a run of digit words that reaches the end', () => {
    const prose = 'The weather today is mild and the forecast says so.';
    assert.equal(card.pendingFrom(prose), prose.length);
    const open = `Number: ${spell('411111')} on`;
    assert.equal(card.pendingFrom(open), open.indexOf('four'));
    const done = `${spell('4111111111111111')}.`;
    assert.equal(card.pendingFrom(done), done.length);
  });
});

describe('IBAN detector', () => {
  const d = ibanDetector();
  it('finds compact and printed IBANs and checks country length and mod 97', () => {
    assertFinds(d, 'IBAN DE89 3704 0044 0532 0130 00 thanks', ['DE89 3704 0044 0532 0130 00']);
    assertFinds(d, 'to GB82WEST12345698765432.', ['GB82WEST12345698765432']);
    assertFinds(d, 'DE89 3704 0044 0532 0130 01', []);
    assertFinds(d, 'DE89370400440532013', []);
    assertFinds(d, 'XX89370400440532013000', []);
    assert.equal(d.find('GB82WEST12345698765432')[0]?.validation.detail, 'GB');
  });
  it('finds every generated IBAN and rejects every corrupted check', () => {
    const rng = new Rng(2);
    for (let i = 0; i < 200; i++) {
      const v = g.iban(rng);
      assertFinds(d, `acct ${v} ok`, [v]);
      assertFinds(d, g.ibanBadChecksum(rng), []);
    }
  });
});

describe('US SSN detector', () => {
  const d = usSsnDetector();
  it('applies the SSA area, group and serial rules', () => {
    assertFinds(d, 'SSN 123-45-6789.', ['123-45-6789']);
    for (const bad of [
      '000-12-3456',
      '666-12-3456',
      '912-12-3456',
      '123-00-4567',
      '123-45-0000',
      '078-05-1120',
    ]) {
      assertFinds(d, `SSN ${bad}`, []);
    }
    assertFinds(d, '123-45 6789', []);
    assertFinds(d, '1123-45-6789', []);
  });
  it('ranks the dashed form above the bare one', () => {
    const dashed = d.find('123-45-6789')[0]?.confidence ?? 0;
    const bare = d.find('123456789')[0]?.confidence ?? 1;
    assert.ok(dashed >= 0.5 && bare < 0.5);
  });
});

describe('e-mail detector', () => {
  const d = emailDetector();
  it('finds addresses and trims sentence punctuation', () => {
    assertFinds(d, 'Mail john.doe+x@mail.example.co.uk. Bye', ['john.doe+x@mail.example.co.uk']);
    assertFinds(d, '<a.b@example.io>', ['a.b@example.io']);
    assertFinds(d, "'quoted@example.com'", ['quoted@example.com']);
  });
  it('rejects asset names, hosts without a TLD and over-long local parts, and covers stray dots', () => {
    assertFinds(d, 'icon@2x.png', []);
    assertFinds(d, '.a@example.com', ['.a@example.com']);
    assertFinds(d, 'a..b@example.com', ['a..b@example.com']);
    assertFinds(d, 'root@localhost', []);
    assertFinds(d, `${'a'.repeat(65)}@example.com`, []);
  });
  it('finds internationalised addresses (RFC 6531) in any script, and leaves @-mentions alone', () => {
    assertFinds(d, 'mail jäne@exämple.de, please', ['jäne@exämple.de']);
    assertFinds(d, 'write to δοκιμή@παράδειγμα.δοκιμή.', ['δοκιμή@παράδειγμα.δοκιμή']);
    assertFinds(d, 'x 用户@例子.广告 y', ['用户@例子.广告']);
    assertFinds(d, 'Ünïcødé@bücher.example', ['Ünïcødé@bücher.example']);
    assertFinds(d, '请联系我@微信 谢谢', []);
    // A character outside the BMP ends the local part: the bounds are in UTF-16 units.
    assertFinds(d, 'a😀b@c.de', ['b@c.de']);
    const pending = d.pendingFrom('mail jäne');
    assert.equal(pending, 'mail '.length);
  });
});

describe('phone detector (libphonenumber-js, max metadata)', () => {
  const d = phoneDetector();
  it('finds valid international and national numbers', () => {
    assertFinds(d, 'call (415) 555-2671 or +44 20 7946 0958.', ['(415) 555-2671', '+44 20 7946 0958']);
    assertFinds(d, 'tel +14155552671', ['+14155552671']);
  });
  it('rejects numbers outside allocated ranges, dates and times', () => {
    assertFinds(d, 'call 555-123-4567', []);
    assertFinds(d, 'at 2024-03-15 14:30', []);
    assertFinds(d, 'on 05.10.2023', []);
  });
  it('uses the configured default region for national numbers', () => {
    assertFinds(phoneDetector({ defaultCountry: 'GB' }), 'ring 020 7946 0958', ['020 7946 0958']);
    assertFinds(d, 'ring 020 7946 0958', []);
  });
  it('canonicalises to E.164 so spellings share a pseudonym', () => {
    const canonical = (v: string): string | undefined => d.canonical?.(v);
    assert.equal(canonical('(415) 555-2671'), '+14155552671');
    assert.equal(canonical('+1 415 555 2671'), '+14155552671');
  });
});

describe('IP detectors', () => {
  it('validates IPv4 with node:net', () => {
    const d = ipv4Detector();
    assertFinds(d, 'host 10.0.0.1:8080 and 192.168.1.254.', ['10.0.0.1', '192.168.1.254']);
    assertFinds(d, '256.1.1.1 01.2.3.4 1.2.3.4.5 v1.2.3.4', []);
  });
  it('validates IPv6 with node:net and skips scope operators and short fragments', () => {
    const d = ipv6Detector();
    assertFinds(d, 'at fe80::1ff:fe23:4567:890a: retry', ['fe80::1ff:fe23:4567:890a']);
    assertFinds(d, '2001:db8:85a3:0:0:8a2e:370:7334 ::ffff:192.0.2.128', [
      '2001:db8:85a3:0:0:8a2e:370:7334',
      '::ffff:192.0.2.128',
    ]);
    assertFinds(d, 'std::vector a::b 12:30:45 12::30 00:1A:2B:3C:4D:5E', []);
  });
});

describe('India detectors', () => {
  it('checks Aadhaar with Verhoeff and the first-digit rule', () => {
    const d = aadhaarDetector();
    const rng = new Rng(3);
    for (let i = 0; i < 100; i++) {
      const v = g.aadhaar(rng);
      assertFinds(d, `no ${v}.`, [v]);
      const digits = v.replace(/ /g, '');
      const bad = digits.slice(0, -1) + String((Number(digits.slice(-1)) + 1) % 10);
      assertFinds(d, `no ${bad}.`, []);
    }
    assertFinds(d, '1234 5678 9012', []);
  });
  it('checks the PAN holder-type letter', () => {
    const d = panDetector();
    assertFinds(d, 'PAN ABCPE1234F, ABCDE1234F, ABCPE0000F, abcpe1234f', ['ABCPE1234F']);
  });
});

describe('UK detectors', () => {
  it('checks NHS numbers with mod 11 and rejects repeated digits', () => {
    const d = nhsDetector();
    assertFinds(d, 'NHS 943 476 5919 or 9434765919', ['943 476 5919', '9434765919']);
    assertFinds(d, '943 476 5918 0000000000 1111111111', []);
  });
  it('applies the NINO prefix and suffix rules', () => {
    const d = ninoDetector();
    assertFinds(d, 'NINO AB 12 34 56 C and CE123456D', ['AB 12 34 56 C', 'CE123456D']);
    for (const bad of [
      'GB123456A',
      'BG123456A',
      'ZZ123456A',
      'DA123456A',
      'AO123456A',
      'AB123456E',
      'QQ123456C',
    ]) {
      assertFinds(d, bad, []);
    }
  });
});

describe('crypto address detectors', () => {
  it('verifies Base58Check and bech32/bech32m', () => {
    const d = bitcoinDetector();
    assertFinds(d, 'btc 1BoatSLRHtKNngkdXEeobR76b53LETtpyT and 1BoatSLRHtKNngkdXEeobR76b53LETtpyU', [
      '1BoatSLRHtKNngkdXEeobR76b53LETtpyT',
    ]);
    assertFinds(d, 'bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqzk5jj0.', [
      'bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqzk5jj0',
    ]);
    const rng = new Rng(4);
    for (let i = 0; i < 50; i++) {
      const a = g.bitcoin(rng);
      assertFinds(d, `to ${a}`, [a]);
    }
  });
  it('verifies EIP-55 when the case is mixed and reports plain hex lower', () => {
    const d = ethereumDetector();
    const good = d.find('0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed')[0];
    assert.equal(good?.validation.method, 'eip55');
    assertFinds(d, '0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD', []);
    const plain = d.find('0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed')[0];
    assert.ok(plain !== undefined && plain.confidence < good.confidence);
    assertFinds(d, `0x${'ab'.repeat(32)}`, []);
  });
});

describe('secret detectors', () => {
  it('recognises provider key shapes', () => {
    const d = apiKeyDetector();
    const rng = new Rng(5);
    for (let i = 0; i < 100; i++) {
      const k = g.apiKey(rng);
      assertFinds(d, `key ${k} here`, [k]);
    }
    assert.equal(d.find('AKIAIOSFODNN7EXAMPLE')[0]?.validation.detail, 'aws-access-key-id');
    assertFinds(d, 'AKIAIOSFODNN7EXAMPL ghp_short', []);
  });
  it('accepts JWTs only when header and payload are JSON objects with an alg', () => {
    const d = jwtDetector();
    const rng = new Rng(6);
    const token = g.jwt(rng);
    assertFinds(d, `Bearer ${token}`, [token]);
    const noAlg = `${Buffer.from('{"typ":"JWT"}').toString('base64url')}.${token.split('.')[1] ?? ''}.sig`;
    assertFinds(d, noAlg, []);
  });
  it('redacts the value of credential assignments, not the name, and skips placeholders', () => {
    const d = secretAssignmentDetector();
    assertFinds(d, 'password=hunter2!', ['hunter2!']);
    assertFinds(d, 'DB_PASSWORD: "s3cr3t horse"', ['s3cr3t horse']);
    assertFinds(d, "{'api_key': 'AbC123'}", ['AbC123']);
    assertFinds(d, 'Authorization: Bearer abc.DEF.123', ['abc.DEF.123']);
    assertFinds(d, 'my password is Tr0ub4dor&3.', ['Tr0ub4dor&3']);
    for (const s of [
      'password: ********',
      'token: "<YOUR_TOKEN>"',
      'api_key=${API_KEY}',
      'password: required',
    ]) {
      assertFinds(d, s, []);
    }
    const weak = d.find('the password is incorrect')[0];
    assert.ok(weak === undefined || weak.confidence < 0.5);
  });
  it('flags random tokens but not UUIDs, hashes of low entropy, paths or words', () => {
    const d = highEntropyDetector();
    assertFinds(d, 'token aB3dE5gH7jK9mN1pQ3sT5vX7z', ['aB3dE5gH7jK9mN1pQ3sT5vX7z']);
    assertFinds(
      d,
      '550e8400-e29b-41d4-a716-446655440000 /usr/local/lib/node_modules2 internationalization',
      [],
    );
  });
  it('matches a whole private key block, including JSON-escaped line breaks and truncation', () => {
    const d = privateKeyDetector();
    const rng = new Rng(7);
    const key = g.pem(rng, 'RSA ');
    assertFinds(d, `key:\n${key}\nbye`, [key]);
    const escaped = key.replace(/\n/g, '\\n');
    assertFinds(d, `{"k": "${escaped}"}`, [escaped]);
    const truncated = key.split('\n').slice(0, 3).join('\n');
    assert.equal(d.find(truncated)[0]?.validation.detail, 'truncated');
  });
});

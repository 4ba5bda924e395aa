import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import {
  base58CheckDecode,
  eip55Checksum,
  ibanMod97,
  luhnValid,
  nhsCheckDigit,
  nhsValid,
  segwitDecode,
  shannonEntropy,
  verhoeffCheckDigit,
  verhoeffValid,
} from '../../src/privacy/checksums.ts';
import { keccak256, keccakSponge256 } from '../../src/privacy/keccak.ts';
import { Rng } from './generators.ts';

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

describe('Luhn', () => {
  it('accepts valid and rejects altered numbers', () => {
    assert.equal(luhnValid('4111111111111111'), true);
    assert.equal(luhnValid('79927398713'), true);
    assert.equal(luhnValid('4111111111111112'), false);
    assert.equal(luhnValid('79927398710'), false);
    assert.equal(luhnValid(''), false);
    assert.equal(luhnValid('4111 1111'), false);
  });
});

describe('IBAN mod 97', () => {
  it('gives 1 for the ISO 13616 examples and something else after a change', () => {
    assert.equal(ibanMod97('GB82WEST12345698765432'), 1);
    assert.equal(ibanMod97('DE89370400440532013000'), 1);
    assert.notEqual(ibanMod97('DE89370400440532013001'), 1);
    assert.equal(ibanMod97('DE89-3704'), -1);
  });
});

describe('Verhoeff', () => {
  it('validates the textbook example and generates matching check digits', () => {
    assert.equal(verhoeffCheckDigit('236'), 3);
    assert.equal(verhoeffValid('2363'), true);
    assert.equal(verhoeffValid('2364'), false);
    const rng = new Rng(7);
    for (let i = 0; i < 200; i++) {
      const body = rng.digits(11);
      const check = verhoeffCheckDigit(body);
      assert.equal(verhoeffValid(body + String(check)), true);
      assert.equal(verhoeffValid(body + String((check + 1) % 10)), false);
    }
  });

  it('catches every adjacent transposition of distinct digits', () => {
    const rng = new Rng(8);
    for (let i = 0; i < 200; i++) {
      const body = rng.digits(11);
      const valid = body + String(verhoeffCheckDigit(body));
      const j = rng.int(0, 10);
      if (valid[j] === valid[j + 1]) continue;
      const swapped = valid.slice(0, j) + (valid[j + 1] ?? '') + (valid[j] ?? '') + valid.slice(j + 2);
      assert.equal(verhoeffValid(swapped), false);
    }
  });
});

describe('NHS mod 11', () => {
  it('validates the published example and rejects a changed check digit', () => {
    assert.equal(nhsValid('9434765919'), true);
    assert.equal(nhsValid('9434765918'), false);
    assert.equal(nhsValid('943476591'), false);
  });

  it('reports nine-digit prefixes whose check digit would be 10 as never valid', () => {
    const rng = new Rng(9);
    let seen = 0;
    for (let i = 0; i < 2000 && seen === 0; i++) {
      const nine = rng.digits(9);
      let sum = 0;
      for (let k = 0; k < 9; k++) sum += Number(nine[k]) * (10 - k);
      if (11 - (sum % 11) === 10) {
        seen++;
        assert.equal(nhsCheckDigit(nine), undefined);
      }
    }
    assert.equal(seen, 1);
  });
});

describe('Base58Check', () => {
  it('decodes well-known addresses and rejects a changed character', () => {
    for (const [address, version] of [
      ['1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa', 0],
      ['1BoatSLRHtKNngkdXEeobR76b53LETtpyT', 0],
      ['1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2', 0],
      ['3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy', 5],
    ] as const) {
      const payload = base58CheckDecode(address);
      assert.equal(payload?.length, 21, address);
      assert.equal(payload[0], version);
    }
    assert.equal(base58CheckDecode('1BoatSLRHtKNngkdXEeobR76b53LETtpyU'), undefined);
    assert.equal(base58CheckDecode('1BoatSLRHtKNngkdXEeobR76b53LETtpy0'), undefined);
  });
});

describe('segwit bech32 / bech32m (BIP-173, BIP-350)', () => {
  it('accepts the published valid addresses', () => {
    const taproot = segwitDecode('bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqzk5jj0');
    assert.equal(taproot?.version, 1);
    assert.equal(taproot.encoding, 'bech32m');
    assert.equal(hex(taproot.program), '79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798');
    const v0 = segwitDecode('BC1QW508D6QEJXTDG4Y5R3ZARVARY0C5XW7KV8F3T4');
    assert.equal(hex(v0?.program ?? new Uint8Array()), '751e76e8199196d454941c45d1b3a323f1433bd6');
    for (const a of [
      'bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4',
      'bc1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3qccfmv3',
      'tb1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3q0sl5k7',
      'bc1pw508d6qejxtdg4y5r3zarvary0c5xw7kw508d6qejxtdg4y5r3zarvary0c5xw7kt5nd6y',
    ]) {
      assert.notEqual(segwitDecode(a), undefined, a);
    }
  });

  it('rejects bad checksums, the wrong constant for the version, and mixed case', () => {
    for (const a of [
      'bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t5',
      'bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqh2y7hd',
      'bc1pw508d6qejxtdg4y5r3zarvary0c5xw7kw508d6qejxtdg4y5r3zarvary0c5xw7k7grplx',
      'bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kemeawh',
      'bc1QW508D6QEJXTDG4Y5R3ZARVARY0C5XW7KV8F3T4',
    ]) {
      assert.equal(segwitDecode(a), undefined, a);
    }
  });
});

describe('Keccak-256 and EIP-55', () => {
  it('matches the published Keccak-256 vectors', () => {
    assert.equal(
      hex(keccak256(new Uint8Array())),
      'c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470',
    );
    assert.equal(
      hex(keccak256(Buffer.from('abc'))),
      '4e03657aea45a94fc7d47ba826c8d667c0d1e6e33a64a036ec44f58fa12d6c45',
    );
  });

  it('equals node:crypto sha3-256 when given SHA3 padding, across block boundaries', () => {
    const rng = new Rng(10);
    for (const n of [0, 1, 135, 136, 137, 271, 272, 273, 1000]) {
      const data = rng.bytes(n);
      assert.equal(
        hex(keccakSponge256(data, 0x06)),
        createHash('sha3-256').update(data).digest('hex'),
        `length ${n}`,
      );
    }
  });

  it('produces the EIP-55 test addresses', () => {
    for (const a of [
      '5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed',
      'fB6916095ca1df60bB79Ce92cE3Ea74c37c5d359',
      'dbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB',
      'D1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb',
      '52908400098527886E0F7030069857D2E4169EE7',
      '8617E340B3D01FA5F11F306F4090FD50E238070D',
      'de709f2102306220921060314715629080e2fb77',
      '27b1fdb04752bbc536007a920d24acb045561c26',
    ]) {
      assert.equal(eip55Checksum(a.toLowerCase()), a);
    }
  });
});

describe('Shannon entropy', () => {
  it('is 0 for one repeated symbol and log2(n) for n distinct symbols', () => {
    assert.equal(shannonEntropy(''), 0);
    assert.equal(shannonEntropy('aaaa'), 0);
    assert.equal(shannonEntropy('abcd'), 2);
    assert.equal(shannonEntropy('abcdefgh'), 3);
  });
});

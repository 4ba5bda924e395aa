import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { InvalidInputError, WardenCryptoError } from '../../src/crypto/index.ts';
import {
  argon2id,
  formatPasswordHash,
  hashPassword,
  MAX_PASSWORD_BYTES,
  needsRehash,
  parsePasswordHash,
  PASSWORD_HASH_PARAMS,
  verifyPassword,
} from '../../src/identity/credentials/passwords.ts';

// Cheap parameters for tests that are about the format, not the cost.
const FAST = { memoryKiB: 64, passes: 1, parallelism: 1 };

describe('argon2id, RFC 9106 §5.3 test vector', () => {
  it('matches the published tag (secret and associated data included)', async () => {
    const tag = await argon2id({
      message: Buffer.alloc(32, 0x01),
      nonce: Buffer.alloc(16, 0x02),
      secret: Buffer.alloc(8, 0x03),
      associatedData: Buffer.alloc(12, 0x04),
      passes: 3,
      memoryKiB: 32,
      parallelism: 4,
      tagBytes: 32,
    });
    assert.equal(tag.toString('hex'), '0d640df58d78766c08c037a34a8b53c9d01ef0452d75b65eb52520e96b01e659');
  });

  it('reports bad raw parameters as a typed error', async () => {
    await assert.rejects(
      argon2id({
        message: Buffer.alloc(1),
        nonce: Buffer.alloc(16),
        passes: 1,
        memoryKiB: 1,
        parallelism: 1,
        tagBytes: 32,
      }),
      InvalidInputError,
    );
  });
});

describe('hashPassword / verifyPassword', () => {
  it('uses the OWASP parameters by default and produces a canonical PHC string', async () => {
    const phc = await hashPassword('correct horse battery staple');
    assert.match(phc, /^\$argon2id\$v=19\$m=19456,t=2,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$/);
    assert.equal(await verifyPassword('correct horse battery staple', phc), true);
    assert.equal(await verifyPassword('correct horse battery stapl', phc), false);
    assert.equal(needsRehash(phc), false);
    const parsed = parsePasswordHash(phc);
    assert.equal(parsed.salt.length, 16);
    assert.equal(formatPasswordHash(parsed, parsed.salt, parsed.tag), phc);
  });

  it('salts: the same password hashes differently each time', async () => {
    const [a, b] = await Promise.all([hashPassword('pw', FAST), hashPassword('pw', FAST)]);
    assert.notEqual(a, b);
    assert.equal(await verifyPassword('pw', a), true);
    assert.equal(await verifyPassword('pw', b), true);
  });

  it('normalizes to NFKC, so composed and decomposed forms verify alike', async () => {
    const phc = await hashPassword('caf\u00e9', FAST);
    assert.equal(await verifyPassword('cafe\u0301', phc), true);
  });

  it('returns false (never throws) for empty, over-long or ill-formed candidate passwords', async () => {
    const phc = await hashPassword('pw', FAST);
    for (const bad of ['', 'x'.repeat(MAX_PASSWORD_BYTES + 1), 'a\ud800b', 42 as unknown as string]) {
      assert.equal(await verifyPassword(bad, phc), false);
    }
  });

  it('refuses to hash empty, over-long or ill-formed passwords, without echoing them', async () => {
    for (const bad of ['', 'secret-'.repeat(200), 'a\udc00']) {
      await assert.rejects(hashPassword(bad, FAST), (e: unknown) => {
        assert.ok(e instanceof InvalidInputError);
        assert.ok(!e.message.includes('secret-'));
        return true;
      });
    }
  });

  it('refuses out-of-range parameters', async () => {
    for (const p of [
      { memoryKiB: 4 },
      { passes: 0 },
      { parallelism: 17 },
      { saltBytes: 8 },
      { tagBytes: 8 },
      { memoryKiB: 2 ** 20 },
    ]) {
      await assert.rejects(hashPassword('pw', { ...FAST, ...p }), InvalidInputError);
    }
  });

  it('verifies a hash made with other (within-limits) parameters', async () => {
    const phc = await hashPassword('pw', { memoryKiB: 256, passes: 3, parallelism: 4, tagBytes: 64 });
    assert.match(phc, /\$m=256,t=3,p=4\$/);
    assert.equal(await verifyPassword('pw', phc), true);
    assert.equal(await verifyPassword('pW', phc), false);
  });
});

describe('needsRehash', () => {
  it('flags hashes weaker than the current parameters on any axis', async () => {
    assert.equal(needsRehash(await hashPassword('pw', FAST)), true);
    const current = { ...PASSWORD_HASH_PARAMS, memoryKiB: 64, passes: 1 };
    assert.equal(needsRehash(await hashPassword('pw', FAST), current), false);
    assert.equal(needsRehash(await hashPassword('pw', { ...FAST, parallelism: 2 }), current), false);
    assert.equal(needsRehash(await hashPassword('pw', { ...FAST, tagBytes: 16 }), current), true);
    assert.equal(
      needsRehash(await hashPassword('pw', { ...FAST, memoryKiB: 128, passes: 2 }), current),
      false,
    );
    assert.equal(needsRehash(await hashPassword('pw', FAST), { ...current, passes: 2 }), true);
  });
});

describe('malformed PHC strings', () => {
  const good = '$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHRzYWx0c2FsdA$' + 'A'.repeat(42) + 'E';

  it('accepts the well-formed baseline', () => {
    assert.equal(parsePasswordHash(good).tagBytes, 32);
  });

  const cases: [string, string][] = [
    ['empty', ''],
    ['argon2i', good.replace('argon2id', 'argon2i')],
    ['argon2d', good.replace('argon2id', 'argon2d')],
    ['version 16', good.replace('v=19', 'v=16')],
    ['no version', good.replace('$v=19', '')],
    ['params out of order', good.replace('m=64,t=1,p=1', 't=1,m=64,p=1')],
    ['leading zero', good.replace('m=64', 'm=064')],
    ['extra param', good.replace('p=1', 'p=1,keyid=abc')],
    ['memory too high', good.replace('m=64', 'm=4294967295')],
    ['passes zero', good.replace('t=1', 't=0')],
    ['passes too high', good.replace('t=1', 't=1000000')],
    ['lanes zero', good.replace('p=1', 'p=0')],
    ['memory below 8p', good.replace('m=64,t=1,p=1', 'm=64,t=1,p=9')],
    ['padded salt', good.replace('c2FsdHNhbHRzYWx0c2FsdA', 'c2FsdHNhbHRzYWx0c2FsdA==')],
    ['base64url salt', good.replace('c2FsdHNhbHRzYWx0c2FsdA', 'c2FsdHNhbHRzYWx0c2F_dA')],
    ['non-canonical tail bits', good.replace(/E$/, 'F')],
    ['short salt', good.replace('c2FsdHNhbHRzYWx0c2FsdA', 'c2FsdA')],
    ['short tag', good.replace('A'.repeat(42) + 'E', 'AAAAAAAA')],
    ['missing tag', good.replace(/\$[^$]+$/, '')],
    ['trailing field', good + '$x'],
    ['no leading $', good.slice(1)],
    ['whitespace', good + ' '],
    ['huge', good + 'A'.repeat(1000)],
  ];
  for (const [name, phc] of cases) {
    it(`rejects: ${name}`, async () => {
      assert.throws(() => parsePasswordHash(phc), InvalidInputError);
      assert.throws(() => needsRehash(phc), InvalidInputError);
      await assert.rejects(verifyPassword('pw', phc), InvalidInputError);
    });
  }

  it('never throws anything but InvalidInputError, and never echoes the input (fast-check)', () => {
    const phcish = fc
      .array(
        fc.oneof(
          fc.constantFrom('$', 'argon2id', 'v=19', 'm=', 't=', 'p=', ',', '64', '1', '=', 'A', '/', '+'),
          fc.string({ maxLength: 8 }),
        ),
        { maxLength: 16 },
      )
      .map((parts) => parts.join(''));
    fc.assert(
      fc.property(fc.oneof(phcish, fc.string(), fc.constant(good)), (s) => {
        try {
          parsePasswordHash(s);
        } catch (e) {
          assert.ok(e instanceof WardenCryptoError && e instanceof InvalidInputError);
          assert.equal(e.message, 'malformed password hash');
        }
      }),
      { numRuns: 2000 },
    );
  });

  it('parse/format round trip for valid parameters (fast-check)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 16 }),
        fc.integer({ min: 1, max: 16 }),
        fc.uint8Array({ minLength: 8, maxLength: 64 }),
        fc.uint8Array({ minLength: 16, maxLength: 64 }),
        (p, t, salt, tag) => {
          const phc = formatPasswordHash({ memoryKiB: 8 * p + 8, passes: t, parallelism: p }, salt, tag);
          const parsed = parsePasswordHash(phc);
          assert.deepEqual([parsed.memoryKiB, parsed.passes, parsed.parallelism], [8 * p + 8, t, p]);
          assert.ok(parsed.salt.equals(salt) && parsed.tag.equals(tag));
          assert.equal(formatPasswordHash(parsed, parsed.salt, parsed.tag), phc);
        },
      ),
    );
  });
});

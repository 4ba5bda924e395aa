import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  AeadKey,
  InvalidInputError,
  InvalidKeyError,
  MacKey,
  WardenCryptoError,
} from '../../src/crypto/index.ts';
import {
  API_KEY_PATTERN,
  createApiKey,
  formatApiKey,
  hasScopes,
  normalizeScopes,
  parseApiKey,
  touch,
  verifyApiKey,
  type ApiKeyParts,
  type ApiKeyRecord,
} from '../../src/identity/credentials/api-keys.ts';

const BASE62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
const b62 = (n: number) =>
  fc.string({ unit: fc.constantFrom(...BASE62.split('')), minLength: n, maxLength: n });
const partsArb: fc.Arbitrary<ApiKeyParts> = fc.record({
  env: fc.stringMatching(/^[a-z][a-z0-9]{0,15}$/),
  id: b62(16),
  secret: b62(43),
});

const serverKey = MacKey.generate();
const now = new Date('2026-01-01T00:00:00Z');

function store(...records: ApiKeyRecord[]) {
  const m = new Map(records.map((r) => [r.id, r]));
  return (id: string) => Promise.resolve(m.get(id));
}

describe('API key format', () => {
  it('creates wdn_<env>_<id>_<secret><checksum> keys that parse back', () => {
    const { key, record } = createApiKey(serverKey, { env: 'live', scopes: ['kms:encrypt'], now });
    assert.match(key, /^wdn_live_[0-9A-Za-z]{16}_[0-9A-Za-z]{49}$/);
    assert.equal(key.length, 4 + 5 + 17 + 49);
    const parsed = parseApiKey(key);
    assert.ok(parsed.ok);
    assert.equal(parsed.parts.id, record.id);
    assert.equal(parsed.parts.env, 'live');
    assert.equal(key.match(API_KEY_PATTERN)?.[0], key);
    assert.equal(`token: ${key}.`.match(API_KEY_PATTERN)?.[0], key);
  });

  it('stores only the keyed hash: the record does not contain the secret', () => {
    const { key, record } = createApiKey(serverKey, { env: 'test', scopes: ['a'], now });
    const parsed = parseApiKey(key);
    assert.ok(parsed.ok);
    assert.ok(!JSON.stringify(record).includes(parsed.parts.secret));
    assert.match(record.hash, /^[A-Za-z0-9_-]{43}$/);
    assert.deepEqual(Object.keys(record).sort(), [
      'createdAt',
      'env',
      'expiresAt',
      'hash',
      'id',
      'lastUsedAt',
      'revokedAt',
      'scopes',
    ]);
  });

  it('format/parse round trip (fast-check)', () => {
    fc.assert(
      fc.property(partsArb, (parts) => {
        const key = formatApiKey(parts);
        assert.deepEqual(parseApiKey(key), { ok: true, parts: { ...parts } });
      }),
    );
  });

  it('any single changed character is detected (fast-check)', () => {
    const chars = BASE62 + '_-. wdn';
    fc.assert(
      fc.property(partsArb, fc.nat(), fc.constantFrom(...Array.from(chars)), (parts, pos, ch) => {
        const key = formatApiKey(parts);
        const i = pos % key.length;
        fc.pre(key[i] !== ch);
        const flipped = key.slice(0, i) + ch + key.slice(i + 1);
        const r = parseApiKey(flipped);
        assert.equal(r.ok, false);
      }),
      { numRuns: 2000 },
    );
  });

  it('transpositions of adjacent different characters are detected (fast-check)', () => {
    fc.assert(
      fc.property(partsArb, fc.nat(), (parts, pos) => {
        const key = formatApiKey(parts);
        const i = pos % (key.length - 1);
        fc.pre(key[i] !== key[i + 1]);
        const swapped = key.slice(0, i) + key[i + 1]! + key[i]! + key.slice(i + 2);
        assert.equal(parseApiKey(swapped).ok, false);
      }),
      { numRuns: 1000 },
    );
  });

  it('rejects malformed keys with the right reason', () => {
    const key = formatApiKey({ env: 'live', id: 'A'.repeat(16), secret: 'b'.repeat(43) });
    const checksumFlip = key.slice(0, -1) + (key.endsWith('0') ? '1' : '0');
    assert.deepEqual(parseApiKey(checksumFlip), { ok: false, reason: 'checksum' });
    for (const bad of [
      '',
      key.slice(0, -1),
      key + 'a',
      key.replace('wdn_', 'wdx_'),
      key.replace('live', 'LIVE'),
      key.replace('live', 'li_ve'),
      ` ${key}`,
      `${key}\n`,
      key.toUpperCase(),
      'wdn_live__' + 'a'.repeat(49),
      null,
      42,
      { toString: () => key },
      'x'.repeat(100_000),
    ]) {
      const r = parseApiKey(bad);
      assert.equal(r.ok, false);
    }
    assert.throws(
      () => formatApiKey({ env: 'live', id: 'short', secret: 'b'.repeat(43) }),
      InvalidInputError,
    );
  });
});

describe('verifyApiKey', () => {
  it('accepts a fresh key, and returns its record', async () => {
    const { key, record } = createApiKey(serverKey, {
      env: 'live',
      scopes: ['audit:read', 'kms:encrypt'],
      now,
    });
    const r = await verifyApiKey(serverKey, key, store(record), { now, requiredScopes: ['kms:encrypt'] });
    assert.deepEqual(r, { ok: true, record });
  });

  it('defaults to a 90-day lifetime and expires exactly then', async () => {
    const { key, record } = createApiKey(serverKey, { env: 'live', scopes: ['x'], now });
    assert.equal(record.expiresAt.getTime() - now.getTime(), 90 * 86_400_000);
    const lookup = store(record);
    assert.equal(
      (await verifyApiKey(serverKey, key, lookup, { now: new Date(record.expiresAt.getTime() - 1) })).ok,
      true,
    );
    assert.deepEqual(await verifyApiKey(serverKey, key, lookup, { now: record.expiresAt }), {
      ok: false,
      reason: 'expired',
      id: record.id,
    });
  });

  it('distinguishes unknown, mismatch, revoked, insufficient_scope, malformed and checksum', async () => {
    const a = createApiKey(serverKey, { env: 'live', scopes: ['x'], now });
    const b = createApiKey(serverKey, { env: 'live', scopes: ['x'], now });
    const pa = parseApiKey(a.key);
    assert.ok(pa.ok);
    const reason = async (key: unknown, records: ApiKeyRecord[], opts = {}) => {
      const r = await verifyApiKey(serverKey, key, store(...records), { now, ...opts });
      return r.ok ? 'ok' : r.reason;
    };
    assert.equal(await reason(a.key, [b.record]), 'unknown');
    // Another key's secret under a's id: the checksum is right, the hash is not.
    const forged = formatApiKey({ ...pa.parts, secret: 'Z'.repeat(43) });
    assert.equal(await reason(forged, [a.record]), 'mismatch');
    // Same id and secret presented under another env: bound into the hash.
    assert.equal(await reason(formatApiKey({ ...pa.parts, env: 'test' }), [a.record]), 'mismatch');
    // A record stored under the wrong id (swap) does not verify.
    assert.equal(await reason(a.key, [{ ...b.record, id: a.record.id }]), 'mismatch');
    // A different server key.
    const other = await verifyApiKey(MacKey.generate(), a.key, store(a.record), { now });
    assert.deepEqual(other, { ok: false, reason: 'mismatch', id: a.record.id });
    assert.equal(await reason(a.key, [{ ...a.record, revokedAt: now }]), 'revoked');
    assert.equal(await reason(a.key, [a.record], { requiredScopes: ['y'] }), 'insufficient_scope');
    assert.equal(await reason('wdn_nope', [a.record]), 'malformed');
    assert.equal(
      await reason(a.key.slice(0, -1) + (a.key.endsWith('0') ? '1' : '0'), [a.record]),
      'checksum',
    );
  });

  it('does not consult the store for malformed or mistyped keys', async () => {
    let calls = 0;
    const lookup = () => {
      calls++;
      return undefined;
    };
    await verifyApiKey(serverKey, 'garbage', lookup);
    await verifyApiKey(
      serverKey,
      formatApiKey({ env: 'a', id: 'A'.repeat(16), secret: 'b'.repeat(43) }).slice(0, -1) + '!',
      lookup,
    );
    assert.equal(calls, 0);
  });

  it('returns a result for any input and never throws an untyped error (fast-check)', async () => {
    const { key, record } = createApiKey(serverKey, { env: 'live', scopes: ['x'], now });
    const lookup = store(record);
    const inputs = fc.oneof(
      fc.string(),
      fc.constant(key),
      fc.tuple(fc.nat(), fc.string({ maxLength: 3 })).map(([i, s]) => {
        const at = i % key.length;
        return key.slice(0, at) + s + key.slice(at + 1);
      }),
      partsArb.map(formatApiKey),
      fc.anything(),
    );
    await fc.assert(
      fc.asyncProperty(inputs, async (input) => {
        const r = await verifyApiKey(serverKey, input, lookup, { now });
        assert.equal(r.ok, input === key);
      }),
      { numRuns: 1000 },
    );
  });

  it('throws a typed error for a wrong server key type, whatever the input', async () => {
    const wrong = AeadKey.generate() as unknown as MacKey;
    const { key, record } = createApiKey(serverKey, { env: 'live', scopes: ['x'], now });
    for (const input of [key, 'garbage']) {
      await assert.rejects(verifyApiKey(wrong, input, store(record)), (e: unknown) => {
        assert.ok(e instanceof InvalidKeyError && e instanceof WardenCryptoError);
        return true;
      });
    }
  });
});

describe('scopes, ttl and touch', () => {
  it('validates, de-duplicates and sorts scopes', () => {
    assert.deepEqual(normalizeScopes(['kms:encrypt', 'audit:read', 'kms:encrypt']), [
      'audit:read',
      'kms:encrypt',
    ]);
    for (const bad of [
      [],
      ['KMS'],
      ['kms:*'],
      ['a b'],
      [':x'],
      ['x:'],
      ['a:b:c:d:e'],
      ['a'.repeat(33)],
      Array.from({ length: 65 }, (_, i) => `s${i}`),
    ]) {
      assert.throws(() => normalizeScopes(bad), InvalidInputError, JSON.stringify(bad).slice(0, 40));
    }
    assert.ok(hasScopes({ scopes: ['a', 'b:c'] }, ['b:c']));
    assert.ok(!hasScopes({ scopes: ['b'] }, ['b:c']));
  });

  it('refuses bad env and ttl', () => {
    for (const input of [
      { env: 'Live', scopes: ['x'] },
      { env: 'li_ve', scopes: ['x'] },
      { env: '', scopes: ['x'] },
      { env: 'live', scopes: ['x'], ttlSeconds: 59 },
      { env: 'live', scopes: ['x'], ttlSeconds: 367 * 86_400 },
      { env: 'live', scopes: ['x'], ttlSeconds: 1.5 },
      { env: 'live', scopes: ['x'], now: new Date(NaN) },
    ]) {
      assert.throws(() => createApiKey(serverKey, input), InvalidInputError);
    }
    assert.equal(
      createApiKey(serverKey, {
        env: 'live',
        scopes: ['x'],
        ttlSeconds: 3600,
        now,
      }).record.expiresAt.getTime(),
      now.getTime() + 3_600_000,
    );
  });

  it('touch asks to persist lastUsedAt at most once a minute', () => {
    const t0 = touch({ lastUsedAt: null }, now);
    assert.deepEqual(t0, { lastUsedAt: now, persist: true });
    assert.deepEqual(touch({ lastUsedAt: now }, new Date(now.getTime() + 59_999)), {
      lastUsedAt: now,
      persist: false,
    });
    const later = new Date(now.getTime() + 60_000);
    assert.deepEqual(touch({ lastUsedAt: now }, later), { lastUsedAt: later, persist: true });
    assert.deepEqual(touch({ lastUsedAt: now }, later, 3600).persist, false);
  });
});

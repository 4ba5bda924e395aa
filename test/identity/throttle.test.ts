import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { InvalidInputError } from '../../src/crypto/index.ts';
import { AuthThrottle } from '../../src/identity/credentials/throttle.ts';

function clock(start = 1_700_000_000_000) {
  let t = start;
  return { now: () => t, advance: (seconds: number) => (t += seconds * 1000) };
}

describe('AuthThrottle', () => {
  const alice = { principal: 'alice', address: '203.0.113.7' };

  it('allows 4 failures freely, locks for 1 s at the 5th, doubling up to 15 min', () => {
    const c = clock();
    const t = new AuthThrottle({ now: c.now });
    for (let i = 1; i <= 4; i++)
      assert.deepEqual(t.recordFailure(alice), { allowed: true, retryAfterSeconds: 0 });
    assert.deepEqual(t.recordFailure(alice), { allowed: false, retryAfterSeconds: 1 });
    const delays: number[] = [];
    for (let i = 6; i <= 17; i++) {
      const d = t.check(alice);
      c.advance(d.retryAfterSeconds);
      assert.equal(t.check(alice).allowed, true);
      delays.push(t.recordFailure(alice).retryAfterSeconds);
    }
    assert.deepEqual(delays, [2, 4, 8, 16, 32, 64, 128, 256, 512, 900, 900, 900]);
  });

  it('counts down retryAfterSeconds and rounds up', () => {
    const c = clock();
    const t = new AuthThrottle({ now: c.now, principal: { freeFailures: 1, baseDelaySeconds: 10 } });
    t.recordFailure({ principal: 'bob' });
    c.advance(3.2);
    assert.deepEqual(t.check({ principal: 'bob' }), { allowed: false, retryAfterSeconds: 7 });
    c.advance(6.8);
    assert.deepEqual(t.check({ principal: 'bob' }), { allowed: true, retryAfterSeconds: 0 });
  });

  it('a success resets the principal but not the address', () => {
    const c = clock();
    const t = new AuthThrottle({ now: c.now, address: { freeFailures: 6 } });
    for (let i = 0; i < 5; i++) t.recordFailure(alice);
    assert.deepEqual(t.failures(alice), { principal: 5, address: 5 });
    t.recordSuccess(alice);
    assert.deepEqual(t.failures(alice), { principal: 0, address: 5 });
    assert.equal(t.check(alice).allowed, true);
    t.recordFailure({ principal: 'carol', address: alice.address });
    assert.equal(t.check({ principal: 'dave', address: alice.address }).allowed, false);
  });

  it('per-address limit catches spraying across principals (50 by default)', () => {
    const c = clock();
    const t = new AuthThrottle({ now: c.now });
    for (let i = 0; i < 49; i++)
      assert.ok(t.recordFailure({ principal: `user${i}`, address: '198.51.100.1' }).allowed);
    assert.equal(t.recordFailure({ principal: 'user49', address: '198.51.100.1' }).allowed, false);
    assert.equal(t.check({ principal: 'fresh', address: '198.51.100.1' }).allowed, false);
    assert.equal(t.check({ principal: 'fresh', address: '198.51.100.2' }).allowed, true);
  });

  it('forgets a key after resetAfterSeconds of quiet (1 h)', () => {
    const c = clock();
    const t = new AuthThrottle({ now: c.now });
    for (let i = 0; i < 20; i++) t.recordFailure(alice);
    c.advance(3599);
    assert.equal(t.failures(alice).principal, 20);
    c.advance(1);
    assert.deepEqual(t.failures(alice), { principal: 0, address: 0 });
    assert.equal(t.check(alice).allowed, true);
  });

  it('bounds memory: evicts the least recently failed keys, and prune drops expired ones', () => {
    const c = clock();
    const t = new AuthThrottle({ now: c.now, maxEntries: 3 });
    for (const p of ['a', 'b', 'c', 'd']) t.recordFailure({ principal: p });
    assert.deepEqual(t.size, { principals: 3, addresses: 0 });
    assert.equal(t.failures({ principal: 'a' }).principal, 0);
    assert.equal(t.failures({ principal: 'd' }).principal, 1);
    c.advance(3600);
    t.prune();
    assert.deepEqual(t.size, { principals: 0, addresses: 0 });
  });

  it('never allows more than freeFailures failures without a lock in between (fast-check)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ wait: fc.integer({ min: 0, max: 2000 }), who: fc.constantFrom('p1', 'p2') }), {
          maxLength: 60,
        }),
        (events) => {
          const c = clock();
          const t = new AuthThrottle({ now: c.now });
          for (const e of events) {
            c.advance(e.wait);
            const subject = { principal: e.who };
            const before = t.check(subject);
            assert.ok(before.retryAfterSeconds >= 0 && before.retryAfterSeconds <= 900);
            assert.equal(before.allowed, before.retryAfterSeconds === 0);
            if (before.allowed) {
              const after = t.recordFailure(subject);
              assert.equal(after.allowed, t.failures(subject).principal < 5);
            }
          }
        },
      ),
    );
  });

  it('refuses invalid policies', () => {
    assert.throws(() => new AuthThrottle({ principal: { baseDelaySeconds: 0 } }), InvalidInputError);
    assert.throws(() => new AuthThrottle({ principal: { maxDelaySeconds: 0.5 } }), InvalidInputError);
    assert.throws(() => new AuthThrottle({ address: { freeFailures: -1 } }), InvalidInputError);
    assert.throws(() => new AuthThrottle({ address: { resetAfterSeconds: 10 } }), InvalidInputError);
    assert.throws(() => new AuthThrottle({ maxEntries: 0 }), InvalidInputError);
  });
});

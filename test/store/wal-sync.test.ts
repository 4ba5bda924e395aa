// FlushCoalescer: the rule that makes `Store.sync()` sound — a request resolves only after a flush that started
// after the request was made — checked on fixed schedules and on random interleavings (fast-check).

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { FlushCoalescer } from '../../src/store/wal-sync.ts';

interface Flush {
  readonly startedAt: number;
  readonly resolve: () => void;
  readonly reject: (err: Error) => void;
}

/**
 * A coalescer over flushes the test completes by hand; `clock` orders requests and flush starts. Starting a flush
 * while another one runs fails the test.
 */
function harness(): { coalescer: FlushCoalescer; flushes: Flush[]; tick: () => number } {
  let clock = 0;
  let running = false;
  const flushes: Flush[] = [];
  const coalescer = new FlushCoalescer(
    () =>
      new Promise<void>((resolve, reject) => {
        assert.equal(running, false, 'two flushes at once');
        running = true;
        const settle = (): void => {
          running = false;
        };
        flushes.push({
          startedAt: ++clock,
          resolve: () => {
            settle();
            resolve();
          },
          reject: (err) => {
            settle();
            reject(err);
          },
        });
      }),
  );
  return { coalescer, flushes, tick: () => ++clock };
}

const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('FlushCoalescer', () => {
  it('starts a flush at once when none runs', async () => {
    const { coalescer, flushes } = harness();
    const done = coalescer.request();
    assert.equal(flushes.length, 1);
    flushes[0]?.resolve();
    await done;
  });

  it('makes requests that arrive during a flush share one flush that starts after it', async () => {
    const { coalescer, flushes } = harness();
    const first = coalescer.request();
    const second = coalescer.request();
    const third = coalescer.request();
    assert.equal(second, third);
    assert.equal(flushes.length, 1, 'the second flush must wait for the first');
    let secondDone = false;
    void second.then(() => (secondDone = true));
    flushes[0]?.resolve();
    await first;
    await turn();
    assert.equal(secondDone, false, 'resolved by a flush that started before the request');
    assert.equal(flushes.length, 2);
    flushes[1]?.resolve();
    await second;
  });

  it('rejects the requests of a failed flush, and the next request starts a new one', async () => {
    const { coalescer, flushes } = harness();
    const failed = coalescer.request();
    flushes[0]?.reject(new Error('EIO'));
    await assert.rejects(failed, /EIO/);
    const next = coalescer.request();
    assert.equal(flushes.length, 2);
    flushes[1]?.resolve();
    await next;
  });

  it('a request queued behind a failing flush still gets a flush of its own', async () => {
    const { coalescer, flushes } = harness();
    const first = coalescer.request();
    const queued = coalescer.request();
    flushes[0]?.reject(new Error('EIO'));
    await assert.rejects(first, /EIO/);
    await turn();
    assert.equal(flushes.length, 2);
    flushes[1]?.resolve();
    await queued;
  });

  it('never resolves a request with a flush that started before it (random schedules)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.constantFrom('request', 'finish', 'fail', 'turn'), { minLength: 1, maxLength: 60 }),
        async (steps) => {
          const { coalescer, flushes, tick } = harness();
          let finished = 0;
          let lastFinished = 0;
          const outcomes: Promise<{ requestedAt: number; ok: boolean; coveredBy: number }>[] = [];
          for (const step of steps) {
            if (step === 'request') {
              const requestedAt = tick();
              const before = flushes.length;
              outcomes.push(
                coalescer.request().then(
                  () => ({ requestedAt, ok: true, coveredBy: lastFinished }),
                  () => ({ requestedAt, ok: false, coveredBy: before }),
                ),
              );
            } else if (step === 'finish' || step === 'fail') {
              const flush = flushes[finished];
              if (flush === undefined) continue;
              finished++;
              lastFinished = flush.startedAt;
              if (step === 'finish') flush.resolve();
              else flush.reject(new Error('EIO'));
              await turn();
            } else {
              await turn();
            }
          }
          // Drain: finish every flush until all requests settle.
          for (let i = 0; i < 200 && finished < flushes.length + 1; i++) {
            const flush = flushes[finished];
            if (flush === undefined) {
              await turn();
              if (flushes[finished] === undefined) break;
              continue;
            }
            finished++;
            lastFinished = flush.startedAt;
            flush.resolve();
            await turn();
          }
          for (const outcome of await Promise.all(outcomes)) {
            if (outcome.ok) assert.ok(outcome.coveredBy > outcome.requestedAt);
          }
          // Coalesced: never more flushes than requests.
          assert.ok(flushes.length <= outcomes.length);
        },
      ),
      { numRuns: 200 },
    );
  });
});

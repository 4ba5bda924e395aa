import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { constants as fsConstants } from 'node:fs';
import { mkdtemp, readFile, readdir, readlink, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { JsonLinesAuditRecorder } from '../../src/audit/index.ts';
import type { AuditEvent } from '../../src/audit/index.ts';

let dir: string;
let files = 0;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'warden-recorder-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

function event(n: number, outcome: AuditEvent['outcome'] = 'success'): AuditEvent {
  return {
    action: 'kms.encrypt',
    principal: { id: 'svc:pipeline', authMethod: 'oauth2' },
    resource: `key:k${n}`,
    outcome,
    details: { n, quote: 'a "quoted" value\nwith a newline' },
  };
}

async function lines(path: string): Promise<Record<string, unknown>[]> {
  const text = await readFile(path, 'utf8');
  assert.ok(text === '' || text.endsWith('\n'), 'the file ends with a whole line');
  return text
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** RLIMIT_FSIZE of this process, through util-linux's prlimit (Node ignores SIGXFSZ: writes past it get EFBIG). */
function setFileSizeLimit(soft: string): void {
  execFileSync('prlimit', ['--pid', String(process.pid), `--fsize=${soft}:unlimited`]);
}

const resourceNumber = (line: Record<string, unknown>) => Number(String(line.resource).slice('key:k'.length));

describe('JsonLinesAuditRecorder', () => {
  it('writes one JSON line per event, time first, in a file only its owner can read', async () => {
    const path = join(dir, `audit-${files++}.jsonl`);
    const recorder = await JsonLinesAuditRecorder.open(path);
    const before = Date.now();
    await recorder.record(event(1));
    await recorder.close();
    const [line, ...rest] = await lines(path);
    assert.equal(rest.length, 0);
    assert.deepEqual(Object.keys(line ?? {}), [
      'time',
      'action',
      'principal',
      'resource',
      'outcome',
      'details',
    ]);
    assert.deepEqual({ ...line, time: undefined }, { ...event(1), time: undefined });
    const time = Date.parse(String(line?.time));
    assert.match(String(line?.time), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    assert.ok(time >= before - 1 && time <= Date.now());
    assert.equal((await stat(path)).mode & 0o777, 0o600);
  });

  it('opens the log for synchronous appends: a write returns only once its data is on disk', async () => {
    const path = join(dir, `audit-${files++}.jsonl`);
    const recorder = await JsonLinesAuditRecorder.open(path);
    try {
      let flags: number | undefined;
      for (const fd of await readdir('/proc/self/fd')) {
        const target = await readlink(`/proc/self/fd/${fd}`).catch(() => '');
        if (target !== path) continue;
        const info = await readFile(`/proc/self/fdinfo/${fd}`, 'utf8');
        flags = parseInt(/^flags:\s+([0-7]+)/m.exec(info)?.[1] ?? '', 8);
      }
      assert.ok(flags !== undefined, 'the log is open');
      assert.equal(flags & fsConstants.O_DSYNC, fsConstants.O_DSYNC);
      assert.equal(flags & fsConstants.O_APPEND, fsConstants.O_APPEND);
    } finally {
      await recorder.close();
    }
  });

  it('appends to an existing log rather than replacing it', async () => {
    const path = join(dir, `audit-${files++}.jsonl`);
    for (const n of [1, 2]) {
      const recorder = await JsonLinesAuditRecorder.open(path);
      await recorder.record(event(n));
      await recorder.close();
    }
    assert.deepEqual((await lines(path)).map(resourceNumber), [1, 2]);
  });

  it('records every event of a burst larger than the pipeline, each exactly once and whole', async () => {
    const path = join(dir, `audit-${files++}.jsonl`);
    const recorder = await JsonLinesAuditRecorder.open(path);
    // 1,000 events in one turn, then 200 more spread over later turns while the first writes are in flight.
    const burst = Array.from({ length: 1000 }, (_, n) => recorder.record(event(n)));
    const trickle: Promise<void>[] = [];
    for (let n = 1000; n < 1200; n++) {
      if (n % 10 === 0) await new Promise((resolve) => setImmediate(resolve));
      trickle.push(recorder.record(event(n)));
    }
    await Promise.all([...burst, ...trickle]);
    await recorder.close();
    const recorded = (await lines(path)).map(resourceNumber).sort((a, b) => a - b);
    assert.deepEqual(
      recorded,
      Array.from({ length: 1200 }, (_, n) => n),
    );
  });

  it('keeps causal order: an event recorded after another one was durable comes later in the file', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.integer({ min: 1, max: 80 }), { minLength: 1, maxLength: 8 }),
        async (groups) => {
          const path = join(dir, `audit-${files++}.jsonl`);
          const recorder = await JsonLinesAuditRecorder.open(path);
          // Group g's events are recorded together; group g + 1 starts only once all of group g resolved.
          let n = 0;
          const groupOf: number[] = [];
          for (const [g, size] of groups.entries()) {
            const pending: Promise<void>[] = [];
            for (let i = 0; i < size; i++) {
              groupOf[n] = g;
              pending.push(recorder.record(event(n++)));
            }
            await Promise.all(pending);
          }
          await recorder.close();
          const order = (await lines(path)).map((line) => groupOf[resourceNumber(line)] ?? -1);
          assert.equal(order.length, n);
          assert.deepEqual(
            order,
            [...order].sort((a, b) => a - b),
          );
          const times = (await lines(path)).map((line) => String(line.time));
          for (let i = 1; i < times.length; i++) {
            if (order[i] !== order[i - 1])
              assert.ok((times[i] ?? '') >= (times[i - 1] ?? ''), 'time goes forward');
          }
        },
      ),
      { numRuns: 25 },
    );
  });

  it('refuses events it cannot make durable: every caller whose write failed is rejected', async () => {
    // /dev/full accepts the open and fails every write with ENOSPC, as a full disk does.
    const recorder = await JsonLinesAuditRecorder.open('/dev/full');
    const results = await Promise.allSettled(
      Array.from({ length: 100 }, (_, n) => recorder.record(event(n))),
    );
    assert.equal(results.length, 100);
    for (const r of results) {
      assert.equal(r.status, 'rejected');
      assert.equal((r.reason as NodeJS.ErrnoException).code, 'ENOSPC');
    }
    await recorder.close();
  });

  it('ends a line that a crash cut short before appending, so the next event stays readable', async () => {
    const path = join(dir, `audit-${files++}.jsonl`);
    const whole = '{"time":"2026-11-22T00:00:00.000Z","action":"kms.encrypt"}\n';
    await writeFile(path, `${whole}{"time":"2026-11-22T00:00:01.000Z","act`, { mode: 0o600 });
    const recorder = await JsonLinesAuditRecorder.open(path);
    await recorder.record(event(1));
    await recorder.close();
    const [first, fragment, appended, ...rest] = (await readFile(path, 'utf8')).split('\n');
    assert.equal(`${first}\n`, whole);
    assert.equal(fragment, '{"time":"2026-11-22T00:00:01.000Z","act');
    assert.equal(resourceNumber(JSON.parse(appended ?? '') as Record<string, unknown>), 1);
    assert.deepEqual(rest, ['']);
    // A log that ends with a whole line is appended to as it is.
    const again = await JsonLinesAuditRecorder.open(path);
    await again.record(event(2));
    await again.close();
    assert.equal((await readFile(path, 'utf8')).split('\n').length, 5);
  });

  it('refuses a batch the disk cut short, and ends its fragment before the next one', async () => {
    const path = join(dir, `audit-${files++}.jsonl`);
    const recorder = await JsonLinesAuditRecorder.open(path);
    await recorder.record(event(1));
    const size = (await stat(path)).size;
    // A file size limit on this process makes the kernel write part of the next batch, as a filling disk does.
    setFileSizeLimit(String(size + 100));
    try {
      await assert.rejects(recorder.record(event(2)), /cut short/);
      await assert.rejects(recorder.record(event(3)), { code: 'EFBIG' }); // nothing written at all
    } finally {
      setFileSizeLimit('unlimited');
    }
    await recorder.record(event(4));
    await recorder.close();
    const [first, fragment, last, ...rest] = (await readFile(path, 'utf8')).split('\n');
    assert.equal(resourceNumber(JSON.parse(first ?? '') as Record<string, unknown>), 1);
    assert.equal(fragment?.length, 100);
    assert.throws(() => JSON.parse(fragment), SyntaxError);
    assert.equal(resourceNumber(JSON.parse(last ?? '') as Record<string, unknown>), 4);
    assert.deepEqual(rest, ['']);
  });

  it('close waits for the writes in flight, then refuses new events', async () => {
    const path = join(dir, `audit-${files++}.jsonl`);
    const recorder = await JsonLinesAuditRecorder.open(path);
    const recorded = Array.from({ length: 100 }, (_, n) => recorder.record(event(n)));
    await recorder.close();
    await Promise.all(recorded);
    assert.equal((await lines(path)).length, 100);
    await assert.rejects(recorder.record(event(100)), /closed/);
  });
});

// Crash safety of the JSON-lines audit recorder: a child appends from 32 writers as fast as it can and is killed
// with SIGKILL at random points, over and over, on the same file. After every kill, every event the child
// acknowledged is a whole, parseable line of the file, and the only unparseable lines are fragments of writes a
// kill cut (at most one per kill), never glued to a later event: the next open ends them first.
// In practice SIGKILL waits for the kernel to finish copying a write (kills land in the O_DSYNC wait, which is
// most of a write's time), so cut lines are rare here; recorder.test.ts makes them on purpose (a log written
// with a cut tail, a short write under a file size limit).

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { it } from 'node:test';
import { JsonLinesAuditRecorder } from '../../src/audit/index.ts';
import { tempDir } from '../envelope/support.ts';
import { killAfterAcks } from '../support/crash.ts';

const WRITER = join(import.meta.dirname, 'fixtures', 'recorder-writer.ts');
const ITERATIONS = 10;

/** Runs the writer until it has acknowledged a random number of events, waits a random moment, kills it. */
async function crashOnce(path: string, first: number): Promise<number[]> {
  const child = spawn(process.execPath, [WRITER, path, String(first)], { stdio: ['ignore', 'pipe', 'pipe'] });
  const { lines } = await killAfterAcks(child, { acks: Math.floor(Math.random() * 400), maxDelayMs: 5 });
  return lines.map(Number);
}

/** The numbers of the file's whole events, and how many of its newline-ended lines are not JSON. */
async function contents(path: string): Promise<{ events: Set<number>; fragments: number }> {
  const lines = (await readFile(path, 'utf8')).split('\n');
  lines.pop(); // after the last newline: empty, or the fragment of a write the last kill cut
  const events = new Set<number>();
  let fragments = 0;
  for (const line of lines) {
    try {
      const event = JSON.parse(line) as { details: { n: number } };
      events.add(event.details.n);
    } catch {
      fragments++;
    }
  }
  return { events, fragments };
}

it('keeps every acknowledged event readable across repeated SIGKILLs', { timeout: 120_000 }, async () => {
  const path = join(tempDir('warden-recorder-crash-'), 'audit.jsonl');
  const acked: number[] = [];
  for (let i = 0; i < ITERATIONS; i++) {
    acked.push(...(await crashOnce(path, i * 1_000_000)));
    const { events, fragments } = await contents(path);
    for (const n of acked)
      assert.ok(events.has(n), `acknowledged event ${n} is a whole line after kill ${i + 1}`);
    assert.ok(fragments <= i, `${fragments} cut lines after ${i + 1} kills`);
  }
  // One more open ends a fragment the last kill left; what is appended after it is whole.
  const recorder = await JsonLinesAuditRecorder.open(path);
  await recorder.record({
    action: 'crash.test',
    principal: { id: 'writer:last', authMethod: 'test' },
    resource: 'res:last',
    outcome: 'success',
    details: { n: -1 },
  });
  await recorder.close();
  const text = await readFile(path, 'utf8');
  assert.ok(text.endsWith('\n'));
  const { events, fragments } = await contents(path);
  assert.ok(events.has(-1));
  for (const n of acked) assert.ok(events.has(n));
  assert.ok(fragments <= ITERATIONS);
  assert.ok(acked.length > 0);
});

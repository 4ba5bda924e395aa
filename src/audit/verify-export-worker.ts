/**
 * Worker thread of the export verifier: inspects and judges the entry lines it is sent (export-entry.ts) and
 * answers with one fixed-size record per line (`JUDGED_RECORD` bytes, layout in export-judges.ts).
 */
import { parentPort } from 'node:worker_threads';
import { inspectEntryLine, judgeEventBody } from './export-entry.ts';
import { JUDGED_RECORD } from './export-judges.ts';
import type { JudgeJob, JudgeReply } from './export-judges.ts';

const port = parentPort;
if (port === null) throw new Error('verify-export-worker runs only as a worker thread');

port.on('message', (job: JudgeJob) => {
  const bytes = new Uint8Array(job.lines);
  const out = new Uint8Array(job.ends.length * JUDGED_RECORD);
  const view = new DataView(out.buffer);
  let start = 0;
  for (let i = 0; i < job.ends.length; i++) {
    const end = job.ends[i] as number;
    const entry = end > start ? inspectEntryLine(bytes.subarray(start, end)) : undefined;
    start = end;
    const at = i * JUDGED_RECORD;
    if (entry === undefined) continue; // kind 0: not recognised
    out[at] = entry.event === null ? 1 : 2;
    out[at + 1] = entry.event === null ? 0 : judgeEventBody(entry.index, entry.leaf, entry.event);
    view.setFloat64(at + 2, entry.index, true);
    out.set(entry.leaf, at + 10);
  }
  port.postMessage({ id: job.id, records: out.buffer } satisfies JudgeReply, [out.buffer]);
});

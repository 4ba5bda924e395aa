/*
 * The shared shape of the SIGKILL tests: a child process prints one line on stdout per piece of work it has made
 * durable (its acknowledgement), the test kills it at a random moment, then checks that everything acknowledged
 * survived.
 */
import type { ChildProcessByStdio } from 'node:child_process';
import type { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';

export type CrashChild = ChildProcessByStdio<null, Readable, Readable>;

/**
 * Waits until `child` has printed `acks` lines (0: not at all), then a random moment of up to `maxDelayMs` more,
 * and kills it with SIGKILL. Resolves once the child is gone, with every whole line it printed and its stderr.
 * Rejects if the child exits on its own before the kill.
 */
export async function killAfterAcks(
  child: CrashChild,
  options: { readonly acks: number; readonly maxDelayMs: number },
): Promise<{ lines: string[]; stderr: string }> {
  const lines: string[] = [];
  let partial = '';
  let stderr = '';
  const closed = new Promise<void>((resolve) => {
    child.on('close', () => {
      resolve();
    });
  });
  child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  await new Promise<void>((resolve, reject) => {
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      const whole = (partial + chunk).split('\n');
      partial = whole.pop() ?? '';
      lines.push(...whole);
      if (lines.length >= options.acks) resolve();
    });
    child.on('exit', (code) => {
      reject(new Error(`the child exited (${String(code)}) before the kill:\n${stderr}`));
    });
    if (options.acks === 0) resolve();
  });
  await sleep(Math.random() * options.maxDelayMs);
  child.kill('SIGKILL');
  await closed; // every line the child printed before dying has been read
  return { lines, stderr };
}

import { fstatSync } from 'node:fs';
import type { SingleBar as ProgressBar } from 'cli-progress';

/** Human output on stdout, or one JSON document with `--json`; progress bars only on a TTY stderr. */
export interface Output {
  readonly json: boolean;
  result(human: string, data: unknown): void;
  warn(message: string): void;
  progress(label: string, total: number): Progress;
}

export interface Progress {
  update(done: number): void;
  stop(): void;
}

const noProgress: Progress = { update: () => undefined, stop: () => undefined };

/**
 * Whether descriptor `fd` is a terminal, without creating Node's stream for it: a pipe or file answers from one
 * fstat; only a character device (a terminal, or /dev/null) loads node:tty, whose dependencies (net, streams) cost
 * ~0.8 MiB that a streaming pipeline should not carry.
 */
export function isTerminal(fd: number): boolean {
  if (!fstatSync(fd).isCharacterDevice()) return false;
  return process.getBuiltinModule('node:tty').isatty(fd);
}

/** Below this, work finishes before a bar is worth drawing. */
const PROGRESS_MIN_BYTES = 32 * 1024 * 1024;

/**
 * `process.stdout` and `process.stderr` are looked up on first use, not here: creating Node's stream for a pipe
 * makes the pipe non-blocking (libuv), and `warden encrypt - -o -` writes that descriptor itself, in sequence.
 */
export function createOutput(
  json: boolean,
  stdout?: NodeJS.WriteStream,
  stderr?: NodeJS.WriteStream,
): Output {
  return {
    json,
    result(human, data) {
      (stdout ?? process.stdout).write(json ? `${JSON.stringify(data, null, 2)}\n` : `${human}\n`);
    },
    warn(message) {
      (stderr ?? process.stderr).write(
        json ? `${JSON.stringify({ warning: message })}\n` : `warden: warning: ${message}\n`,
      );
    },
    progress(label, total) {
      if (json || total < PROGRESS_MIN_BYTES) return noProgress;
      if (stderr === undefined ? !isTerminal(2) : !stderr.isTTY) return noProgress;
      const bars = stderr ?? process.stderr;
      // Loaded only when a bar is drawn: scripted runs (no TTY) of `warden encrypt` do not carry it in memory
      // (nor the ESM namespace of node:module, which alone costs ~0.2 MiB).
      const { createRequire } = process.getBuiltinModule('node:module');
      const { SingleBar } = createRequire(import.meta.url)('cli-progress') as {
        SingleBar: typeof ProgressBar;
      };
      const bar = new SingleBar({
        stream: bars,
        format: `${label} [{bar}] {percentage}% | {done}/{size} MiB | {rate} MiB/s | ETA {eta}s`,
        hideCursor: true,
        clearOnComplete: true,
      });
      const start = performance.now();
      const mib = (n: number) => (n / 2 ** 20).toFixed(0);
      bar.start(total, 0, { done: '0', size: mib(total), rate: '0' });
      return {
        update(done) {
          const seconds = (performance.now() - start) / 1000;
          bar.update(done, { done: mib(done), rate: seconds > 0 ? mib(done / seconds) : '0' });
        },
        stop() {
          bar.stop();
        },
      };
    },
  };
}

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${n} B` : `${value.toFixed(1)} ${units[unit]}`;
}

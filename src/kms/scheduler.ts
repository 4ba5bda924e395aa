import type { KmsService } from './service.ts';

/**
 * Runs KMS maintenance (due rotations, automatic decryption floors, due destructions) at start-up — so a
 * rotation missed while Warden was down happens then — and every `intervalMs` after. Runs never overlap.
 * State lives in the database (each key's next rotation time), so the schedule survives restarts.
 */
export interface KmsScheduler {
  /** Resolves when the start-up run finished. */
  readonly started: Promise<void>;
  stop(): Promise<void>;
}

export function startKmsScheduler(
  kms: KmsService,
  options: {
    intervalMs?: number;
    onRun?: (result: Awaited<ReturnType<KmsService['runMaintenance']>>) => void;
    onError?: (err: unknown) => void;
  } = {},
): KmsScheduler {
  const intervalMs = options.intervalMs ?? 60_000;
  let running: Promise<void> = Promise.resolve();
  let stopped = false;
  const run = (): Promise<void> => {
    running = running.then(async () => {
      if (stopped) return;
      try {
        options.onRun?.(await kms.runMaintenance());
      } catch (err) {
        options.onError?.(err);
      }
    });
    return running;
  };
  const started = run();
  const timer = setInterval(() => void run(), intervalMs);
  timer.unref();
  return {
    started,
    async stop() {
      stopped = true;
      clearInterval(timer);
      await running;
    },
  };
}

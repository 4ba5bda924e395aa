/**
 * A throwaway SoftHSM2 token for tests: a temporary token directory, a `softhsm2.conf` pointing at it, the
 * `SOFTHSM2_CONF` environment variable set for this process (SoftHSM reads it at `C_Initialize`), and a token
 * initialised with `softhsm2-util`. SoftHSM2 missing is an error, never a skip: CI installs it (`.ci/run`).
 *
 * The PINs are random per token. They appear in the argv of `softhsm2-util` (test-only; the product never passes
 * a PIN on a command line) and nowhere else.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Debian/Ubuntu's path (package `softhsm2`); override with `SOFTHSM2_MODULE`. */
export const SOFTHSM_MODULE = process.env.SOFTHSM2_MODULE ?? '/usr/lib/softhsm/libsofthsm2.so';
const SOFTHSM_UTIL = process.env.SOFTHSM2_UTIL ?? 'softhsm2-util';

export interface SoftHsmToken extends AsyncDisposable {
  readonly modulePath: string;
  readonly tokenLabel: string;
  readonly pin: string;
  readonly soPin: string;
  readonly dir: string;
  readonly confPath: string;
  /** Environment for a child process that should see this token (`SOFTHSM2_CONF`); carries no PIN. */
  readonly env: NodeJS.ProcessEnv;
  cleanup(): Promise<void>;
}

export interface SoftHsmTokenOptions {
  readonly label?: string;
}

export async function createSoftHsmToken(options: SoftHsmTokenOptions = {}): Promise<SoftHsmToken> {
  if (!existsSync(SOFTHSM_MODULE)) {
    throw new Error(
      `SoftHSM2 is not installed: ${SOFTHSM_MODULE} is missing (apt-get install softhsm2, or set SOFTHSM2_MODULE)`,
    );
  }
  const dir = await mkdtemp(path.join(tmpdir(), 'warden-softhsm-'));
  const tokenDir = path.join(dir, 'tokens');
  const confPath = path.join(dir, 'softhsm2.conf');
  const tokenLabel = options.label ?? `warden-test-${randomBytes(4).toString('hex')}`;
  const pin = randomBytes(12).toString('hex');
  const soPin = randomBytes(12).toString('hex');
  const cleanup = async (): Promise<void> => {
    await rm(dir, { recursive: true, force: true });
  };
  try {
    await mkdir(tokenDir, { mode: 0o700 });
    await writeFile(
      confPath,
      [
        `directories.tokendir = ${tokenDir}`,
        'objectstore.backend = file',
        'log.level = ERROR',
        'slots.removable = false',
        '',
      ].join('\n'),
      { mode: 0o600 },
    );
    const env = { ...process.env, SOFTHSM2_CONF: confPath };
    try {
      await run(
        SOFTHSM_UTIL,
        ['--init-token', '--free', '--label', tokenLabel, '--so-pin', soPin, '--pin', pin],
        { env },
      );
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      // Never rethrow or attach execFile's error: its message repeats the command line, PINs included.
      // eslint-disable-next-line preserve-caught-error
      throw new Error(
        code === 'ENOENT'
          ? `SoftHSM2 is not installed: ${SOFTHSM_UTIL} not found (apt-get install softhsm2)`
          : `softhsm2-util --init-token failed (exit code ${String(code)})`,
      );
    }
    process.env.SOFTHSM2_CONF = confPath;
    return {
      modulePath: SOFTHSM_MODULE,
      tokenLabel,
      pin,
      soPin,
      dir,
      confPath,
      env: { ...process.env, SOFTHSM2_CONF: confPath },
      cleanup,
      [Symbol.asyncDispose]: cleanup,
    };
  } catch (error) {
    await cleanup();
    throw error;
  }
}

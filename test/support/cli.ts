import { Readable, Writable } from 'node:stream';
import { Command, CommanderError } from 'commander';
import type { KmsCliIo } from '../../src/cli/commands/kms.ts';
import { ExitCode, classify } from '../../src/cli/exit-codes.ts';

/** A writable that keeps what it is given, and says it is not a terminal. */
export class Capture extends Writable {
  readonly chunks: Buffer[] = [];
  isTTY = false;
  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: () => void): void {
    this.chunks.push(Buffer.from(chunk));
    callback();
  }
  bytes(): Buffer {
    return Buffer.concat(this.chunks);
  }
  text(): string {
    return this.bytes().toString('utf8');
  }
}

export interface CliRun {
  readonly code: number;
  readonly out: string;
  readonly err: string;
}

export interface DetailedCliRun extends CliRun {
  /** stdout as bytes, for binary output. */
  readonly stdout: Buffer;
  /** The commander error code, or the classified error's `code`, when the command failed. */
  readonly errorCode?: string;
}

export type CliRegister = (program: Command, io: Partial<KmsCliIo>) => void;

/**
 * Runs `warden <args>` in-process the way src/cli/main.ts does — the command groups registered on a fresh
 * program, errors mapped to exit codes — with the given environment and stdin (text, bytes, or a stream the test
 * writes to while the command runs). `stdout` lets a test watch output while the command is still running.
 */
export async function runCliDetailed(
  register: CliRegister | readonly CliRegister[],
  args: readonly string[],
  env: NodeJS.ProcessEnv,
  stdin?: string | Buffer | Readable,
  options: { readonly stdout?: Capture } = {},
): Promise<DetailedCliRun> {
  const stdout = options.stdout ?? new Capture();
  const stderr = new Capture();
  const program = new Command().name('warden').exitOverride();
  program.configureOutput({ writeErr: (s) => stderr.write(s), writeOut: (s) => stdout.write(s) });
  const io = {
    stdin: stdin instanceof Readable ? stdin : Readable.from(stdin === undefined ? [] : [Buffer.from(stdin)]),
    stdout: stdout as unknown as NodeJS.WriteStream,
    stderr: stderr as unknown as NodeJS.WriteStream,
    env,
  };
  for (const r of typeof register === 'function' ? [register] : register) r(program, io);
  let code: number = ExitCode.ok;
  let errorCode: string | undefined;
  try {
    await program.parseAsync([...args], { from: 'user' });
  } catch (err) {
    if (err instanceof CommanderError) {
      code = ExitCode.usage;
      errorCode = err.code;
    } else {
      const c = classify(err);
      code = c.exitCode;
      errorCode = c.code;
      stderr.write(`warden: ${c.message}\n`);
    }
  }
  const out = stdout.bytes();
  return {
    code,
    out: out.toString('utf8'),
    stdout: out,
    err: stderr.text(),
    ...(errorCode === undefined ? {} : { errorCode }),
  };
}

/** `runCliDetailed` for one command group: exit code and text only. */
export async function runCli(
  register: CliRegister,
  args: readonly string[],
  env: NodeJS.ProcessEnv,
  stdin?: string,
): Promise<CliRun> {
  const { code, out, err } = await runCliDetailed(register, args, env, stdin);
  return { code, out, err };
}

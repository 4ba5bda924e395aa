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
  text(): string {
    return Buffer.concat(this.chunks).toString('utf8');
  }
}

export interface CliRun {
  readonly code: number;
  readonly out: string;
  readonly err: string;
}

/**
 * Runs `warden <args>` in-process the way src/cli/main.ts does — one command group registered on a fresh program,
 * errors mapped to exit codes — with the given environment and stdin.
 */
export async function runCli(
  register: (program: Command, io: Partial<KmsCliIo>) => void,
  args: readonly string[],
  env: NodeJS.ProcessEnv,
  stdin?: string,
): Promise<CliRun> {
  const stdout = new Capture();
  const stderr = new Capture();
  const program = new Command().name('warden').exitOverride();
  program.configureOutput({ writeErr: (s) => stderr.write(s), writeOut: (s) => stdout.write(s) });
  register(program, {
    stdin: Readable.from(stdin === undefined ? [] : [Buffer.from(stdin)]),
    stdout: stdout as unknown as NodeJS.WriteStream,
    stderr: stderr as unknown as NodeJS.WriteStream,
    env,
  });
  let code: number = ExitCode.ok;
  try {
    await program.parseAsync([...args], { from: 'user' });
  } catch (err) {
    if (err instanceof CommanderError) code = ExitCode.usage;
    else {
      const c = classify(err);
      code = c.exitCode;
      stderr.write(`warden: ${c.message}\n`);
    }
  }
  return { code, out: stdout.text(), err: stderr.text() };
}

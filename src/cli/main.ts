import { Command, CommanderError } from 'commander';
import { registerDemoCommand } from './commands/demo.ts';
import { registerEnvelopeCommands } from './commands/envelope.ts';
import { registerKmsCommands } from './commands/kms.ts';
import { registerServerCommand } from './commands/server.ts';
import { ExitCode, classify } from './exit-codes.ts';

const program = new Command()
  .name('warden')
  .description('Warden: encryption, keys, integrity and access control for AI systems')
  .version('0.1.0')
  .exitOverride()
  .showHelpAfterError('(run warden --help for usage)')
  .configureOutput({ writeErr: (s) => process.stderr.write(s) });

registerServerCommand(program);
registerEnvelopeCommands(program);
registerKmsCommands(program);
registerDemoCommand(program);

const wantsJson = process.argv.includes('--json');
try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) {
    process.exitCode = err.exitCode === 0 ? ExitCode.ok : ExitCode.usage;
  } else {
    const { exitCode, code, message } = classify(err);
    process.stderr.write(
      wantsJson ? `${JSON.stringify({ error: { code, message } })}\n` : `warden: ${message}\n`,
    );
    process.exitCode = exitCode;
  }
}

import type { Command } from 'commander';
import { ExitCode, classify } from './exit-codes.ts';

type Register = (program: Command) => void;

/**
 * Command groups are loaded on demand: `warden encrypt` streaming a 10 GB file should not carry the HTTP server,
 * database drivers and HTTP client in memory. Help and unknown commands load every group. Plain `encrypt` and
 * `decrypt` command lines do not even load commander (`directEnvelopeAction`).
 */
const groups: Record<string, () => Promise<Register>> = {
  server: async () => (await import('./commands/server.ts')).registerServerCommand,
  envelope: async () => (await import('./commands/envelope.ts')).registerEnvelopeCommands,
  kms: async () => (await import('./commands/kms.ts')).registerKmsCommands,
  demo: async () => (await import('./commands/demo.ts')).registerDemoCommand,
  audit: async () => (await import('./commands/audit.ts')).registerAuditCommands,
  policies: async () => (await import('./commands/policies.ts')).registerPolicyCommands,
  gateway: async () => (await import('./commands/gateway.ts')).registerGatewayCommands,
  ca: async () => (await import('./commands/ca.ts')).registerCaCommands,
  registry: async () => (await import('./commands/registry.ts')).registerRegistryCommands,
  identity: async () => (await import('./commands/identity.ts')).registerIdentityCommands,
};
const groupOf: Record<string, string> = {
  server: 'server',
  encrypt: 'envelope',
  decrypt: 'envelope',
  inspect: 'envelope',
  rewrap: 'envelope',
  keys: 'kms',
  kms: 'kms',
  operator: 'kms',
  demo: 'demo',
  audit: 'audit',
  policies: 'policies',
  gateway: 'gateway',
  ca: 'ca',
  model: 'registry',
  dataset: 'registry',
  login: 'identity',
  logout: 'identity',
  whoami: 'identity',
  bootstrap: 'identity',
  mfa: 'identity',
  users: 'identity',
  'service-accounts': 'identity',
  'api-keys': 'identity',
  roles: 'identity',
};

const VERSION = '0.1.0';
const args = process.argv.slice(2);
if (args.length === 1 && (args[0] === '--version' || args[0] === '-V')) {
  process.stdout.write(`${VERSION}\n`);
  process.exit(ExitCode.ok);
}
const requested = groupOf[args[0] ?? ''];

async function commandLine(): Promise<{
  run: () => Promise<unknown>;
  usageExit: (err: unknown) => number | undefined;
}> {
  const { Command, CommanderError } = await import('commander');
  const program = new Command()
    .name('warden')
    .description('Warden: encryption, keys, integrity and access control for AI systems')
    // Not commander's .version(): it takes `--version` anywhere on the line, so a mistyped
    // `warden keys disable k --version 1` (for --key-version) printed the version, exited 0 and did nothing.
    .addHelpText('after', '\nwarden --version (or -V) prints the version.')
    .exitOverride()
    .showHelpAfterError('(run warden --help for usage)')
    .configureOutput({ writeErr: (s) => process.stderr.write(s) });
  for (const load of requested === undefined ? Object.values(groups) : [groups[requested]]) {
    if (load !== undefined) (await load())(program);
  }
  return {
    run: () => program.parseAsync(process.argv),
    usageExit: (err) =>
      err instanceof CommanderError ? (err.exitCode === 0 ? ExitCode.ok : ExitCode.usage) : undefined,
  };
}

const direct =
  requested === 'envelope' ? (await import('./commands/envelope.ts')).directEnvelopeAction(args) : undefined;
const { run, usageExit } =
  direct === undefined ? await commandLine() : { run: direct, usageExit: () => undefined };

const wantsJson = process.argv.includes('--json');
try {
  await run();
} catch (err) {
  const usage = usageExit(err);
  if (usage !== undefined) {
    process.exitCode = usage;
  } else {
    const { exitCode, code, message } = classify(err);
    process.stderr.write(
      wantsJson ? `${JSON.stringify({ error: { code, message } })}\n` : `warden: ${message}\n`,
    );
    process.exitCode = exitCode;
  }
}

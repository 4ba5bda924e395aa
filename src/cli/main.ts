import { Command, CommanderError } from 'commander';
import { ExitCode, classify } from './exit-codes.ts';

type Register = (program: Command) => void;

/**
 * Command groups are loaded on demand: `warden encrypt` streaming a 10 GB file should not carry the HTTP server,
 * database drivers and HTTP client in memory. Help and unknown commands load every group.
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

const program = new Command()
  .name('warden')
  .description('Warden: encryption, keys, integrity and access control for AI systems')
  .version('0.1.0')
  .exitOverride()
  .showHelpAfterError('(run warden --help for usage)')
  .configureOutput({ writeErr: (s) => process.stderr.write(s) });

const requested = groupOf[process.argv[2] ?? ''];
for (const load of requested === undefined ? Object.values(groups) : [groups[requested]]) {
  if (load !== undefined) (await load())(program);
}

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

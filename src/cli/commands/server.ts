import type { Command } from 'commander';
import { loadConfig, startWarden } from '../../app/index.ts';
import type { RootMode } from '../../app/index.ts';
import { createOutput } from '../output.ts';

interface ServerOptions {
  dataDir?: string;
  listen?: string;
  root?: RootMode;
  json?: boolean;
}

/**
 * `warden server`: the main job. On embedded defaults (no configuration at all) it runs the KMS with SQLite in
 * the data directory, the insecure development root (auto-unsealed), a generated TLS identity and a bootstrap
 * admin token, and prints how to talk to it.
 */
async function runServer(options: ServerOptions): Promise<void> {
  const out = createOutput(options.json ?? false);
  const config = loadConfig(process.env, {
    ...(options.dataDir === undefined ? {} : { dataDir: options.dataDir }),
    ...(options.listen === undefined ? {} : { listen: options.listen }),
    ...(options.root === undefined ? {} : { root: options.root }),
  });
  const warden = await startWarden(config, {
    log: (line) => {
      process.stderr.write(`warden: ${line}\n`);
    },
  });
  const status = warden.root.status();
  if (status.insecureDevMode === true) {
    out.warn(
      'INSECURE development root of trust: the root key is stored in clear in the data directory. Use --root shamir or pkcs11 for real data.',
    );
  }
  const env = [
    `export WARDEN_ADDR=${warden.url}`,
    `export WARDEN_CACERT=${warden.caPath}`,
    `export WARDEN_TOKEN_FILE=${warden.tokenPath}`,
  ];
  out.result(
    [
      `Warden is listening on ${warden.url} (TLS 1.3; root: ${status.kind}${status.sealed ? ', SEALED' : ''})`,
      `data directory: ${config.dataDir}`,
      warden.tokenCreated
        ? `a bootstrap admin token was written to ${warden.tokenPath} (mode 0600)`
        : `bootstrap admin token: ${warden.tokenPath}`,
      '',
      'In another shell:',
      ...env.map((l) => `  ${l}`),
      '  npx warden keys create datasets --type aes256-gcm',
      '  npx warden encrypt train.csv --key datasets -c purpose=training',
      '  npx warden keys rotate datasets && npx warden rewrap train.csv.wenc',
      '  echo -n secret | npx warden kms encrypt datasets',
      '',
      'Ctrl-C stops it.',
    ].join('\n'),
    {
      url: warden.url,
      caCert: warden.caPath,
      tokenFile: warden.tokenPath,
      dataDir: config.dataDir,
      root: status,
    },
  );
  await new Promise<void>((resolve) => {
    const stop = () => {
      resolve();
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  await warden.close();
}

export function registerServerCommand(program: Command): void {
  program
    .command('server')
    .description(
      'run Warden (KMS and HTTPS API) on embedded defaults, or as configured by WARDEN_* variables',
    )
    .option('--data-dir <path>', 'data directory (default: $WARDEN_DATA_DIR or ~/.local/share/warden)')
    .option('--listen <host:port>', 'listen address (default: $WARDEN_LISTEN or 127.0.0.1:8443)')
    .option(
      '--root <mode>',
      'root of trust: dev (auto-unsealed, insecure), shamir, or pkcs11 (default: $WARDEN_ROOT or dev)',
    )
    .option('--json', 'machine-readable start-up output')
    .action(runServer);
}

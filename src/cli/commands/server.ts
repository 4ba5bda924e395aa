import type { Command } from 'commander';
import { ConfigError, loadConfig, startWarden } from '../../app/index.ts';
import type { RootMode, WardenConfig } from '../../app/index.ts';
import type { RootStatus } from '../../kms/index.ts';
import { CliError, ExitCode } from '../exit-codes.ts';
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
  let config: WardenConfig;
  try {
    config = loadConfig(process.env, {
      ...(options.dataDir === undefined ? {} : { dataDir: options.dataDir }),
      ...(options.listen === undefined ? {} : { listen: options.listen }),
      ...(options.root === undefined ? {} : { root: options.root }),
    });
  } catch (err) {
    // A configuration Warden refuses is the operator's to fix, like a bad option: exit 2, as `warden gateway`.
    if (err instanceof ConfigError) throw new CliError(err.code, err.message, ExitCode.usage);
    throw err;
  }
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
      ...unsealLines(status),
      '',
      'In another shell:',
      ...env.map((l) => `  ${l}`),
      '  npx warden keys create datasets --type aes256-gcm',
      '  npx warden encrypt train.csv --key datasets -c purpose=training',
      '  npx warden keys rotate datasets && npx warden rewrap train.csv.wenc',
      '  echo -n secret | npx warden kms encrypt datasets',
      ...demoLines(warden.gateway?.demo !== undefined),
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

/** What an operator does next when the server starts sealed; key operations answer 503 `sealed` until then. */
function unsealLines(status: RootStatus): string[] {
  if (!status.sealed) return [];
  if (status.kind === 'software' && !status.initialized) {
    return [
      'the root of trust is not initialised, so key operations are refused: run `npx warden operator init`',
      '(it prints the unseal shares once), then `npx warden operator unseal` with enough of them',
    ];
  }
  if (status.kind === 'software') {
    const shares = status.threshold === undefined ? 'enough' : String(status.threshold);
    return [
      `key operations are refused until ${shares} unseal shares are given: \`npx warden operator unseal\``,
    ];
  }
  return [
    'key operations are refused until the HSM session is open: `npx warden operator unseal` (the token PIN)',
  ];
}

/** The commands a newcomer runs against the demo model: a call, a denial, the rate limit, PII redaction. */
function demoLines(demo: boolean): string[] {
  if (!demo) return [];
  const curl =
    'curl -s --cacert "$WARDEN_CACERT" -H "authorization: Bearer $(cat $WARDEN_TOKEN_FILE)" -H content-type:application/json';
  const score = `'{"inputs":[{"name":"features","datatype":"FP32","shape":[1,5],"data":[[85,0.2,6,0,0.3]]}]}'`;
  return [
    '',
    'The demo credit-scoring model runs behind the inference gateway:',
    `  ${curl} "$WARDEN_ADDR/v2/models/credit-score/infer" -d ${score}`,
    '  # denied without credentials (401):',
    `  curl -s --cacert "$WARDEN_CACERT" -H content-type:application/json "$WARDEN_ADDR/v2/models/credit-score/infer" -d ${score}`,
    '  # and 403 for a principal whose role may not invoke it (a data scientist, with an API key):',
    '  npx warden users create dana --roles data-scientist',
    '  KEY=$(npx warden api-keys create --owner user:dana --scopes data-scientist | tail -1)',
    `  curl -s --cacert "$WARDEN_CACERT" -H "authorization: Bearer $KEY" -H content-type:application/json "$WARDEN_ADDR/v2/models/credit-score/infer" -d ${score}`,
    '  # the demo limit is 10 calls a minute per caller; the 11th answers 429 with Retry-After:',
    `  for i in $(seq 11); do ${curl} -o /dev/null -w "%{http_code} " "$WARDEN_ADDR/v2/models/credit-score/infer" -d ${score}; done; echo`,
    '  # PII in a model answer is redacted:',
    `  ${curl} "$WARDEN_ADDR/v1/chat/completions" -d '{"model":"demo-chat","messages":[{"role":"user","content":"Card 4111 1111 1111 1111, mail jo@example.com"}]}'`,
    '  # every call is in the tamper-evident audit log:',
    '  npx warden audit query --action endpoint.invoke',
  ];
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

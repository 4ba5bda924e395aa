import type { Command } from 'commander';
import {
  GatewayConfigError,
  loadStandaloneConfig,
  startDemoModel,
  startStandaloneGateway,
} from '../../gateway/index.ts';
import type { StandaloneConfig } from '../../gateway/index.ts';
import { CliError, ExitCode } from '../exit-codes.ts';
import { createOutput } from '../output.ts';

interface GatewayOptions {
  config?: string;
  json?: boolean;
}

function waitForSignal(): Promise<void> {
  return new Promise<void>((resolve) => {
    process.once('SIGINT', () => {
      resolve();
    });
    process.once('SIGTERM', () => {
      resolve();
    });
  });
}

/**
 * `warden gateway`: the inference gateway as its own process, a member of a Warden deployment — configured with
 * the server's address and its own service account (`warden` section), from a configuration file (`--config` or
 * `WARDEN_GATEWAY_CONFIG`) and `WARDEN_GATEWAY_*` variables. Nodes sharing a Redis (`redis.url`) share their
 * limits, so the gateway scales horizontally behind a load balancer.
 */
async function runGateway(options: GatewayOptions): Promise<void> {
  const out = createOutput(options.json ?? false);
  const file = options.config ?? process.env.WARDEN_GATEWAY_CONFIG;
  if (file === undefined || file === '') {
    throw new CliError(
      'usage',
      'a configuration file is required: --config or WARDEN_GATEWAY_CONFIG',
      ExitCode.usage,
    );
  }
  let config: StandaloneConfig;
  try {
    config = loadStandaloneConfig(file);
  } catch (err) {
    // A configuration the gateway refuses is the operator's to fix, like a bad option: exit 2, not "internal".
    if (err instanceof GatewayConfigError) throw new CliError('config_error', err.message, ExitCode.usage);
    throw err;
  }
  const gateway = await startStandaloneGateway(config);
  if (!gateway.connected) {
    out.warn(
      `cannot load policies from ${config.warden.url} yet: every request is refused until the server answers`,
    );
  }
  const clientCertificates = config.tls?.clientCertificates ?? 'off';
  out.result(
    [
      `Warden gateway listening on ${gateway.url}${config.tls === undefined ? ' (plain HTTP: put a TLS proxy in front)' : ' (TLS 1.3)'}`,
      `Warden server: ${config.warden.url} as ${config.warden.clientId} (environment ${config.environment})`,
      `endpoints: ${config.endpoints.map((e) => `${e.name} -> ${e.model}@${e.version}`).join(', ')}`,
      `client certificates: ${clientCertificates}`,
      gateway.metricsUrl === undefined ? 'metrics: off' : `metrics: ${gateway.metricsUrl}`,
      config.redis === undefined
        ? 'limits: in memory (this node only)'
        : `limits: Redis (${config.redis.failMode})`,
      'Ctrl-C stops it.',
    ].join('\n'),
    {
      url: gateway.url,
      metricsUrl: gateway.metricsUrl ?? null,
      server: config.warden.url,
      connected: gateway.connected,
      endpoints: config.endpoints.map((e) => e.name),
      limiter: config.redis === undefined ? 'memory' : config.redis.failMode,
    },
  );
  await waitForSignal();
  await gateway.close();
}

async function runDemoModel(options: { port: string; json?: boolean }): Promise<void> {
  const out = createOutput(options.json ?? false);
  const port = Number(options.port);
  if (!Number.isInteger(port) || port < 0 || port > 65_535) {
    throw new CliError('usage', '--port must be 0-65535', ExitCode.usage);
  }
  const model = await startDemoModel({ port });
  out.result(
    [
      `demo credit-scoring model on ${model.url} (loopback, plain HTTP)`,
      `  KServe v2: POST ${model.url}/v2/models/credit-score/infer`,
      `  predict:   POST ${model.url}/v1/models/credit-score:predict`,
      `  chat:      POST ${model.url}/v1/chat/completions`,
      'Put it behind `warden gateway` with an endpoint whose upstream.url is this address.',
    ].join('\n'),
    { url: model.url },
  );
  await waitForSignal();
  await model.close();
}

export function registerGatewayCommands(program: Command): void {
  const gateway = program
    .command('gateway')
    .description('run the secure inference gateway (see docs/gateway.md for the configuration file)')
    .option('--config <file>', 'configuration file (default: WARDEN_GATEWAY_CONFIG)')
    .option('--json', 'print the listening addresses as JSON')
    .action(runGateway);
  gateway
    .command('demo-model')
    .description('serve the demo credit-scoring model (KServe v2, predict, OpenAI chat) on loopback')
    .option('--port <port>', 'port (0: any free port)', '8090')
    .option('--json', 'print the address as JSON')
    .action(runDemoModel);
}

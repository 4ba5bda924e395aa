import { createPrivateKey } from 'node:crypto';
import { open, readFile, stat } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import type { Command } from 'commander';
import { KmsClient, KmsClientError, WardenHttp } from '../../client/index.ts';
import type { Key, KeyInfo, KeyType, KeyVersion, RootStatus } from '../../client/index.ts';
import { CliError, ExitCode } from '../exit-codes.ts';
import { createOutput } from '../output.ts';
import type { Output } from '../output.ts';

/**
 * `warden keys ...`, `warden kms ...` and `warden operator ...`: the KMS over its HTTP API, through the SDK.
 *
 * Connection: `WARDEN_ADDR` (default https://127.0.0.1:8443), `WARDEN_CACERT` (PEM file to trust), and the
 * token from `WARDEN_TOKEN` or the file named by `WARDEN_TOKEN_FILE`; `--addr`, `--ca-cert` and `--token-file`
 * override them. Secrets never come from argv: the token comes from the environment or a file, plaintexts and
 * messages from stdin or `--in <file>`, unseal shares from stdin (a prompt without echo on a terminal).
 */

export const DEFAULT_ADDRESS = 'https://127.0.0.1:8443';
/** Largest stdin or file input read (the KMS itself takes at most 64 KiB of plaintext). */
const MAX_INPUT_BYTES = 1024 * 1024;
const KEY_TYPE_NAMES: readonly KeyType[] = [
  'aes256-gcm',
  'hmac-sha256',
  'ed25519',
  'ecdsa-p256',
  'ecdsa-p384',
];

/** Streams and environment the commands use; tests substitute them. */
export interface KmsCliIo {
  readonly stdin: NodeJS.ReadableStream & { isTTY?: boolean; setRawMode?: (mode: boolean) => unknown };
  readonly stdout: NodeJS.WriteStream;
  readonly stderr: NodeJS.WriteStream;
  readonly env: NodeJS.ProcessEnv;
}

export interface ConnectionOptions {
  addr?: string;
  caCert?: string;
  tokenFile?: string;
  purpose?: string;
  json?: boolean;
}

// ---- connection and I/O -----------------------------------------------------------------------------------

/** Maps an SDK failure to the CLI's exit codes. */
export function kmsCliError(err: KmsClientError): CliError {
  const { code, status } = err;
  let exitCode: ExitCode;
  // Data or a signature that does not verify, whether the server (a stored blob, a bundle) or the client (a
  // downloaded file against its recorded SHA-256) found out: the README's "tampered or corrupt" code.
  if (code === 'integrity_failure' || code === 'verification_failed') exitCode = ExitCode.authentication;
  else if (status === 0)
    exitCode =
      code === 'invalid_options'
        ? ExitCode.usage
        : code === 'invalid_response'
          ? ExitCode.internal
          : ExitCode.io;
  else if (status === 401) exitCode = ExitCode.unauthenticated;
  // A registry promotion gate (quarantine, signature, scan), or a policy change that would lock the caller out,
  // refuses like a policy does.
  else if (status === 403 || code.startsWith('gate_') || code === 'policy_lockout')
    exitCode = ExitCode.forbidden;
  // Sealed, audit unavailable, too many attempts, a CA not set up yet: the server cannot serve this now, later
  // it may.
  else if (status === 503 || status === 429 || code === 'ca_not_initialized') exitCode = ExitCode.unavailable;
  else if (code === 'decryption_failed') exitCode = ExitCode.authentication;
  else if (code === 'key_not_found' || code === 'version_unavailable' || code === 'not_exportable')
    exitCode = ExitCode.keyUnavailable;
  else if (status >= 400 && status < 500) exitCode = ExitCode.usage;
  else exitCode = ExitCode.internal;
  return new CliError(code, err.message, exitCode);
}

export async function readToken(
  io: KmsCliIo,
  options: ConnectionOptions,
  out: Output,
): Promise<string | undefined> {
  const fromEnv = io.env.WARDEN_TOKEN;
  if (options.tokenFile === undefined && fromEnv !== undefined && fromEnv !== '') return fromEnv.trim();
  const file = options.tokenFile ?? io.env.WARDEN_TOKEN_FILE;
  if (file === undefined || file === '') {
    // No explicit token: the session `warden login` saved, if any (loaded only then).
    const { sessionToken } = await import('./identity.ts');
    return sessionToken(io, options, out);
  }
  const info = await stat(file);
  if ((info.mode & 0o077) !== 0) out.warn(`token file ${file} is readable by other users (chmod 600 it)`);
  const token = (await readFile(file, 'utf8')).trim();
  if (token === '') throw new CliError('usage', `token file ${file} is empty`, ExitCode.usage);
  return token;
}

/** The HTTP transport to the configured server, for any command group's SDK client. */
export async function connectHttp(
  io: KmsCliIo,
  options: ConnectionOptions,
  out: Output,
  needsToken = true,
): Promise<WardenHttp> {
  const address = options.addr ?? io.env.WARDEN_ADDR ?? DEFAULT_ADDRESS;
  const token = await readToken(io, options, out);
  if (needsToken && token === undefined) {
    throw new CliError(
      'unauthenticated',
      'no token: run warden login, or set WARDEN_TOKEN or WARDEN_TOKEN_FILE (tokens are never taken from the command line)',
      ExitCode.unauthenticated,
    );
  }
  const caFile = options.caCert ?? io.env.WARDEN_CACERT;
  const ca = caFile === undefined || caFile === '' ? undefined : await readFile(caFile);
  const purpose = options.purpose ?? io.env.WARDEN_PURPOSE;
  try {
    return new WardenHttp({
      address,
      ...(token === undefined ? {} : { token }),
      ...(ca === undefined ? {} : { ca }),
      ...(purpose === undefined || purpose === '' ? {} : { purpose }),
    });
  } catch (err) {
    if (err instanceof KmsClientError) throw kmsCliError(err);
    throw err;
  }
}

export async function connect(
  io: KmsCliIo,
  options: ConnectionOptions,
  out: Output,
  needsToken = true,
): Promise<KmsClient> {
  return new KmsClient(await connectHttp(io, options, out, needsToken));
}

/** Reads a bounded amount of stdin. */
export async function readStdin(io: KmsCliIo, limit = MAX_INPUT_BYTES): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of io.stdin) {
    const bytes = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    total += bytes.length;
    if (total > limit) throw new CliError('input_too_large', `stdin exceeds ${limit} bytes`, ExitCode.usage);
    chunks.push(bytes);
  }
  return Buffer.concat(chunks);
}

/** The data of a crypto command: `--in <file>` or stdin. */
async function readInput(io: KmsCliIo, file: string | undefined): Promise<Buffer> {
  if (file !== undefined && file !== '-') {
    const info = await stat(file);
    if (info.size > MAX_INPUT_BYTES)
      throw new CliError('input_too_large', `${file} exceeds ${MAX_INPUT_BYTES} bytes`, ExitCode.usage);
    return readFile(file);
  }
  if (io.stdin.isTTY === true) io.stderr.write('warden: reading from stdin (end with Ctrl-D)\n');
  return readStdin(io);
}

/** A ciphertext argument, or one read from stdin when omitted. */
async function ciphertextArg(io: KmsCliIo, value: string | undefined): Promise<string> {
  const text = value ?? (await readStdin(io)).toString('utf8');
  const trimmed = text.trim();
  if (trimmed === '') throw new CliError('usage', 'no ciphertext given (argument or stdin)', ExitCode.usage);
  return trimmed;
}

/** One secret line typed without echo on a terminal. */
export function promptHidden(io: KmsCliIo, prompt: string): Promise<string> {
  const stdin = io.stdin;
  const setRawMode = stdin.setRawMode?.bind(stdin);
  if (setRawMode === undefined) return Promise.reject(new Error('stdin is not a terminal'));
  io.stderr.write(prompt);
  setRawMode(true);
  stdin.resume();
  return new Promise((resolve, reject) => {
    let value = '';
    const finish = (error?: Error) => {
      stdin.off('data', onData);
      setRawMode(false);
      stdin.pause();
      io.stderr.write('\n');
      if (error === undefined) resolve(value);
      else reject(error);
    };
    const onData = (chunk: Buffer | string) => {
      for (const ch of chunk.toString()) {
        if (ch === '\r' || ch === '\n') {
          finish();
          return;
        }
        if (ch === '\u0003' || ch === '\u0004') {
          finish(new CliError('interrupted', 'interrupted', ExitCode.usage));
          return;
        }
        if (ch === '\u007f' || ch === '\b') value = value.slice(0, -1);
        else value += ch;
      }
    };
    stdin.on('data', onData);
  });
}

/**
 * Writes a plaintext or key material readable by its owner only. A file replaced with --force keeps its inode,
 * so its mode is set through the open handle before anything is written: `mode` alone applies only to a file
 * the open creates, and an existing 0644 file would have been left readable by everyone.
 */
async function writeSecretFile(path: string, data: Uint8Array, force: boolean | undefined): Promise<void> {
  let handle: FileHandle;
  try {
    handle = await open(path, force === true ? 'w' : 'wx', 0o600);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST')
      throw new CliError('output_exists', `${path} already exists (use --force to replace it)`, ExitCode.io);
    throw err;
  }
  try {
    await handle.chmod(0o600);
    await handle.writeFile(data);
  } finally {
    await handle.close();
  }
}

function intOption(name: string, text: string | undefined, min: number, max: number): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text);
  if (!/^\d+$/.test(text.trim()) || !Number.isSafeInteger(n) || n < min || n > max)
    throw new CliError('usage', `${name} must be an integer from ${min} to ${max}`, ExitCode.usage);
  return n;
}

function daysOption(name: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text);
  if (text.trim() === '' || !Number.isFinite(n) || n < 0 || n > 36500)
    throw new CliError('usage', `${name} must be a number of days from 0 to 36500`, ExitCode.usage);
  return n;
}

function contextOption(options: Record<string, unknown>): Buffer | undefined {
  if (options.context !== undefined && options.contextBase64 !== undefined)
    throw new CliError('usage', 'give --context or --context-base64, not both', ExitCode.usage);
  if (typeof options.context === 'string') return Buffer.from(options.context, 'utf8');
  if (typeof options.contextBase64 === 'string')
    return base64Option('--context-base64', options.contextBase64);
  return undefined;
}

function base64Option(name: string, text: string): Buffer {
  const trimmed = text.trim();
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(trimmed) || trimmed.length % 4 !== 0)
    throw new CliError('usage', `${name} must be base64`, ExitCode.usage);
  return Buffer.from(trimmed, 'base64');
}

function keyTypeOption(text: string): KeyType {
  if (!(KEY_TYPE_NAMES as readonly string[]).includes(text))
    throw new CliError('usage', `--type must be one of ${KEY_TYPE_NAMES.join(', ')}`, ExitCode.usage);
  return text as KeyType;
}

// ---- human formatting -------------------------------------------------------------------------------------

function describeKey(info: KeyInfo): string {
  const k = info.key;
  const lines = [
    `${k.name} (${k.type})`,
    `  created:            ${k.createdAt}`,
    `  latest version:     ${k.latestVersion}`,
    `  decryption floor:   ${k.minDecryptionVersion}`,
    `  rotation:           ${k.rotationPeriodDays === null ? 'manual' : `every ${k.rotationPeriodDays} days, next ${k.nextRotationAt ?? '-'}`}`,
    `  automatic floor:    ${k.autoFloorGraceDays === null ? 'off' : `${k.autoFloorGraceDays} days after supersession`}`,
    `  exportable:         ${k.exportable ? 'yes' : 'no'}`,
    ...(k.description === '' ? [] : [`  description:        ${k.description}`]),
    '  versions:',
    ...info.versions.map((v) => `    ${describeVersion(v)}`),
  ];
  return lines.join('\n');
}

function describeVersion(v: KeyVersion): string {
  const when =
    v.state === 'scheduled_destruction'
      ? ` (destroyed at ${v.destroyAt ?? '?'})`
      : v.state === 'destroyed'
        ? ` (at ${v.destroyedAt ?? '?'})`
        : '';
  return `v${v.version}  ${v.state.replace('_', ' ')}${when}  ${v.origin}  ${v.createdAt}`;
}

function describeKeyLine(k: Key): string {
  const rotation =
    k.rotationPeriodDays === null ? 'manual rotation' : `rotates every ${k.rotationPeriodDays}d`;
  return `${k.name.padEnd(24)} ${k.type.padEnd(12)} v${String(k.latestVersion).padEnd(4)} ${rotation}`;
}

function describeStatus(s: RootStatus): string {
  const state = !s.initialized ? 'not initialised' : s.sealed ? 'sealed' : 'unsealed';
  const progress =
    s.sealed && s.threshold !== undefined ? ` (unseal progress ${s.progress ?? 0}/${s.threshold})` : '';
  const dev = s.insecureDevMode === true ? ' [INSECURE development mode]' : '';
  return `root of trust: ${s.kind}, ${state}${progress}${dev}`;
}

// ---- commands ---------------------------------------------------------------------------------------------

type Action = (
  out: Output,
  options: ConnectionOptions & Record<string, unknown>,
  args: (string | undefined)[],
) => Promise<void>;

/** Wraps actions: output per `--json` on the given streams, SDK errors mapped to exit codes. */
export function actionFor(io: KmsCliIo) {
  return (fn: Action) =>
    async (...received: unknown[]): Promise<void> => {
      const command = received[received.length - 1] as Command;
      const options = command.optsWithGlobals<ConnectionOptions & Record<string, unknown>>();
      const args = received.slice(0, -2).map((a) => (typeof a === 'string' ? a : undefined));
      const out = createOutput(options.json ?? false, io.stdout, io.stderr);
      try {
        await fn(out, options, args);
      } catch (err) {
        if (err instanceof KmsClientError) throw kmsCliError(err);
        throw err;
      }
    };
}

export function withConnectionOptions(command: Command): Command {
  return command
    .option('--addr <url>', `Warden server address (default: $WARDEN_ADDR or ${DEFAULT_ADDRESS})`)
    .option('--ca-cert <path>', 'PEM CA certificate to trust for the server (default: $WARDEN_CACERT)')
    .option('--token-file <path>', 'file holding the token (default: $WARDEN_TOKEN or $WARDEN_TOKEN_FILE)')
    .option(
      '--purpose <purpose>',
      'the purpose of the calls, for purpose-bound policies (X-Warden-Purpose; default: $WARDEN_PURPOSE)',
    );
}

async function withClient<T>(
  io: KmsCliIo,
  options: ConnectionOptions,
  out: Output,
  fn: (client: KmsClient) => Promise<T>,
  needsToken = true,
): Promise<T> {
  const client = await connect(io, options, out, needsToken);
  try {
    return await fn(client);
  } finally {
    await client.close();
  }
}

function registerKeys(program: Command, io: KmsCliIo): void {
  const keys = withConnectionOptions(program.command('keys').description('administer KMS keys'));
  const action = actionFor(io);

  const keyOptions = (c: Command, rotationDefault = 'default 90') =>
    c
      .option(
        '--rotation-period-days <days>',
        `days between automatic rotations; 0: manual only (${rotationDefault})`,
      )
      .option('--auto-floor-grace-days <days>', 'stop decrypting with versions superseded this long ago')
      .option('--exportable', 'allow the key material to be exported later')
      .option('--description <text>', 'free-text description')
      .option('--json', 'machine-readable output');
  const keyOptionValues = (o: Record<string, unknown>) => {
    const rotationPeriodDays = daysOption(
      '--rotation-period-days',
      o.rotationPeriodDays as string | undefined,
    );
    const autoFloorGraceDays = daysOption(
      '--auto-floor-grace-days',
      o.autoFloorGraceDays as string | undefined,
    );
    return {
      ...(rotationPeriodDays === undefined ? {} : { rotationPeriodDays }),
      ...(autoFloorGraceDays === undefined ? {} : { autoFloorGraceDays }),
      ...(o.exportable === true ? { exportable: true } : {}),
      ...(typeof o.description === 'string' ? { description: o.description } : {}),
    };
  };

  keyOptions(
    keys
      .command('create')
      .description('create a key')
      .argument('<name>', 'key name')
      .requiredOption('--type <type>', `key type: ${KEY_TYPE_NAMES.join(', ')}`),
  ).action(
    action(async (out, o, [name]) => {
      const info = await withClient(io, o, out, (c) =>
        c.createKey({ name: name ?? '', type: keyTypeOption(o.type as string), ...keyOptionValues(o) }),
      );
      out.result(`created ${describeKey(info)}`, info);
    }),
  );

  keys
    .command('list')
    .description('list keys')
    .option('--json', 'machine-readable output')
    .action(
      action(async (out, o) => {
        const list = await withClient(io, o, out, (c) => c.listKeys());
        out.result(list.length === 0 ? '(no keys)' : list.map(describeKeyLine).join('\n'), { keys: list });
      }),
    );

  keys
    .command('show')
    .description('show a key and its versions')
    .argument('<name>', 'key name')
    .option('--json', 'machine-readable output')
    .action(
      action(async (out, o, [name]) => {
        const info = await withClient(io, o, out, (c) => c.getKey(name ?? ''));
        out.result(describeKey(info), info);
      }),
    );

  keys
    .command('update')
    .description('change rotation period, decryption floor, automatic floor or description')
    .argument('<name>', 'key name')
    .option('--rotation-period-days <days>', 'days between automatic rotations; 0: manual only')
    .option('--min-decryption-version <version>', 'versions below this stop decrypting')
    .option('--auto-floor-grace-days <days|none>', 'automatic decryption floor; none turns it off')
    .option('--description <text>', 'free-text description')
    .option('--json', 'machine-readable output')
    .action(
      action(async (out, o, [name]) => {
        const floorText = o.autoFloorGraceDays as string | undefined;
        const rotationPeriodDays = daysOption(
          '--rotation-period-days',
          o.rotationPeriodDays as string | undefined,
        );
        const minDecryptionVersion = intOption(
          '--min-decryption-version',
          o.minDecryptionVersion as string | undefined,
          1,
          2 ** 32 - 1,
        );
        const changes = {
          ...(rotationPeriodDays === undefined ? {} : { rotationPeriodDays }),
          ...(minDecryptionVersion === undefined ? {} : { minDecryptionVersion }),
          ...(floorText === undefined
            ? {}
            : {
                autoFloorGraceDays:
                  floorText === 'none' ? null : daysOption('--auto-floor-grace-days', floorText),
              }),
          ...(typeof o.description === 'string' ? { description: o.description } : {}),
        };
        if (Object.keys(changes).length === 0)
          throw new CliError('usage', 'nothing to change', ExitCode.usage);
        const key = await withClient(io, o, out, (c) => c.updateKey(name ?? '', changes));
        out.result(`updated ${key.name}`, { key });
      }),
    );

  keys
    .command('rotate')
    .description('add a new latest version')
    .argument('<name>', 'key name')
    .option('--json', 'machine-readable output')
    .action(
      action(async (out, o, [name]) => {
        const version = await withClient(io, o, out, (c) => c.rotateKey(name ?? ''));
        out.result(`rotated ${name ?? ''}: latest version is now ${version.version}`, { version });
      }),
    );

  for (const verb of ['disable', 'enable'] as const) {
    keys
      .command(verb)
      .description(`${verb} one version, or every ${verb === 'disable' ? 'enabled' : 'disabled'} version`)
      .argument('<name>', 'key name')
      .option('--key-version <version>', 'only this version')
      .option('--json', 'machine-readable output')
      .action(
        action(async (out, o, [name]) => {
          const version = intOption('--key-version', o.keyVersion as string | undefined, 1, 2 ** 32 - 1);
          const changed = await withClient(io, o, out, (c) =>
            verb === 'disable' ? c.disableKey(name ?? '', version) : c.enableKey(name ?? '', version),
          );
          const list = changed.map((v) => `v${v.version}`).join(', ');
          out.result(changed.length === 0 ? 'nothing changed' : `${verb}d ${name ?? ''} ${list}`, {
            versions: changed,
          });
        }),
      );
  }

  keys
    .command('destroy')
    .description('schedule a version for destruction (crypto-shredding); cancellable until it happens')
    .argument('<name>', 'key name')
    .argument('<version>', 'key version')
    .option('--delay-days <days>', 'days until destruction (default 7); 0 destroys now and needs --yes')
    .option('--yes', 'confirm immediate, irreversible destruction')
    .option('--json', 'machine-readable output')
    .action(
      action(async (out, o, [name, versionText]) => {
        const version = intOption('<version>', versionText, 1, 2 ** 32 - 1) ?? 0;
        const delayDays = daysOption('--delay-days', o.delayDays as string | undefined);
        if (delayDays === 0 && o.yes !== true) {
          throw new CliError(
            'usage',
            '--delay-days 0 destroys the version now and everything it protects becomes unreadable: add --yes',
            ExitCode.usage,
          );
        }
        const v = await withClient(io, o, out, (c) => c.destroyVersion(name ?? '', version, delayDays));
        out.result(
          v.state === 'destroyed'
            ? `destroyed ${name ?? ''} v${version}`
            : `${name ?? ''} v${version} will be destroyed at ${v.destroyAt ?? '?'} (cancel with warden keys cancel-destroy)`,
          { version: v },
        );
      }),
    );

  keys
    .command('cancel-destroy')
    .description('cancel a scheduled destruction (the version stays disabled)')
    .argument('<name>', 'key name')
    .argument('<version>', 'key version')
    .option('--json', 'machine-readable output')
    .action(
      action(async (out, o, [name, versionText]) => {
        const version = intOption('<version>', versionText, 1, 2 ** 32 - 1) ?? 0;
        const v = await withClient(io, o, out, (c) => c.cancelDestroy(name ?? '', version));
        out.result(`cancelled the destruction of ${name ?? ''} v${version} (now ${v.state})`, { version: v });
      }),
    );

  keys
    .command('public-key')
    .description('print the public key (SPKI PEM) of a signing key')
    .argument('<name>', 'key name')
    .option('--key-version <version>', 'version (default: latest)')
    .option('--json', 'machine-readable output')
    .action(
      action(async (out, o, [name]) => {
        const version = intOption('--key-version', o.keyVersion as string | undefined, 1, 2 ** 32 - 1);
        const r = await withClient(io, o, out, (c) => c.publicKey(name ?? '', version));
        out.result(r.pem.trimEnd(), r);
      }),
    );

  keyOptions(
    keys
      .command('import')
      .description(
        'import key material (BYOK), wrapped on this machine for the KMS; creates the key or adds a version',
      )
      .argument('<name>', 'key name')
      .argument(
        '<key-file>',
        'the key: 32 raw bytes (aes256-gcm, hmac-sha256) or a PKCS#8 private key (PEM or DER)',
      )
      .requiredOption('--type <type>', `key type: ${KEY_TYPE_NAMES.join(', ')}`)
      .option('--encoding <encoding>', 'encoding of a symmetric key file: raw, hex or base64', 'raw')
      .addHelpText(
        'after',
        '\nThe key options apply only when the import creates the key; into an existing key they are refused\n' +
          '(exit 2): change settings with `warden keys update`; exportability is fixed at creation.',
      ),
    'default 0 for a new key: a rotation would replace your material with material the KMS generated',
  ).action(
    action(async (out, o, [name, file]) => {
      const type = keyTypeOption(o.type as string);
      const material = decodeKeyFile(await readFile(file ?? ''), type, o.encoding as string);
      try {
        const info = await withClient(io, o, out, (c) =>
          c.importKey(name ?? '', { type, material, ...keyOptionValues(o) }),
        );
        const version = info.versions[0]?.version ?? 1;
        out.result(`imported ${file ?? ''} as ${info.key.name} v${version} (${info.key.type})`, info);
      } finally {
        material.fill(0);
      }
    }),
  );

  keys
    .command('export')
    .description('export the key material of a key created --exportable')
    .argument('<name>', 'key name')
    .option('--key-version <version>', 'version (default: latest)')
    .option('-o, --out <file>', 'write the raw material to this file (mode 600) instead of printing base64')
    .option('-f, --force', 'replace an existing --out file')
    .option('--json', 'machine-readable output')
    .action(
      action(async (out, o, [name]) => {
        const version = intOption('--key-version', o.keyVersion as string | undefined, 1, 2 ** 32 - 1);
        const exported = await withClient(io, o, out, (c) => c.exportKey(name ?? '', version));
        try {
          if (typeof o.out === 'string') {
            await writeSecretFile(o.out, exported.material, o.force as boolean | undefined);
            out.result(`wrote ${name ?? ''} v${exported.version} to ${o.out}`, {
              name,
              version: exported.version,
              file: o.out,
            });
          } else {
            out.result(exported.material.toString('base64'), {
              name,
              version: exported.version,
              material: exported.material.toString('base64'),
            });
          }
        } finally {
          exported.material.fill(0);
        }
      }),
    );
}

/** Key material from a file: raw/hex/base64 for symmetric keys; PKCS#8 PEM or DER (or a raw Ed25519 seed). */
function decodeKeyFile(bytes: Buffer, type: KeyType, encoding: string): Buffer {
  if (type === 'aes256-gcm' || type === 'hmac-sha256') {
    if (encoding === 'raw') return bytes;
    const text = bytes.toString('utf8').trim();
    bytes.fill(0);
    if (encoding === 'hex') {
      if (!/^([0-9a-fA-F]{2})+$/.test(text))
        throw new CliError('usage', 'the key file is not hex', ExitCode.malformed);
      return Buffer.from(text, 'hex');
    }
    if (encoding === 'base64') return base64Option('the key file', text);
    throw new CliError('usage', '--encoding must be raw, hex or base64', ExitCode.usage);
  }
  if (bytes.subarray(0, 64).toString('latin1').includes('-----BEGIN')) {
    try {
      const der = createPrivateKey({ key: bytes, format: 'pem' }).export({ type: 'pkcs8', format: 'der' });
      return der;
    } catch {
      throw new CliError('malformed', 'the key file is not a readable private key', ExitCode.malformed);
    } finally {
      bytes.fill(0);
    }
  }
  return bytes;
}

function registerCrypto(program: Command, io: KmsCliIo): void {
  const kms = withConnectionOptions(
    program.command('kms').description('cryptographic operations with KMS keys'),
  );
  const action = actionFor(io);
  const contextOptions = (c: Command) =>
    c
      .option('--context <text>', 'encryption context (UTF-8 text), needed again to decrypt')
      .option('--context-base64 <base64>', 'encryption context as base64 bytes');

  contextOptions(
    kms
      .command('encrypt')
      .description('encrypt stdin or --in <file> (at most 64 KiB) and print the ciphertext')
      .argument('<key>', 'key name')
      .option('--in <file>', 'read the plaintext from this file instead of stdin'),
  )
    .option('--json', 'machine-readable output')
    .action(
      action(async (out, o, [name]) => {
        const plaintext = await readInput(io, o.in as string | undefined);
        try {
          const ciphertext = await withClient(io, o, out, (c) =>
            c.encrypt(name ?? '', plaintext, contextOption(o)),
          );
          out.result(ciphertext, { ciphertext });
        } finally {
          plaintext.fill(0);
        }
      }),
    );

  contextOptions(
    kms
      .command('decrypt')
      .description('decrypt a ciphertext (argument or stdin); the plaintext goes to stdout or --out')
      .argument('[ciphertext]', 'the ciphertext (default: read from stdin)')
      .option('-o, --out <file>', 'write the plaintext to this file (mode 600)')
      .option('-f, --force', 'replace an existing --out file'),
  )
    .option('--json', 'machine-readable output (plaintext as base64)')
    .action(
      action(async (out, o, [text]) => {
        const ciphertext = await ciphertextArg(io, text);
        const plaintext = await withClient(io, o, out, (c) => c.decrypt(ciphertext, contextOption(o)));
        try {
          if (typeof o.out === 'string') {
            await writeSecretFile(o.out, plaintext, o.force as boolean | undefined);
            out.result(`wrote ${plaintext.length} bytes to ${o.out}`, {
              file: o.out,
              bytes: plaintext.length,
            });
          } else if (out.json) {
            out.result('', { plaintext: plaintext.toString('base64') });
          } else {
            io.stdout.write(plaintext);
          }
        } finally {
          plaintext.fill(0);
        }
      }),
    );

  contextOptions(
    kms
      .command('datakey')
      .description('generate a 256-bit data key: prints it wrapped and (unless --no-plaintext) in base64')
      .argument('<key>', 'key name')
      .option(
        '--no-plaintext',
        'print only the wrapped data key, alone on its line: `warden kms decrypt` (same --context) unwraps it',
      ),
  )
    .option('--json', 'machine-readable output')
    .action(
      action(async (out, o, [name]) => {
        const key = await withClient(io, o, out, (c) =>
          c.generateDataKey(name ?? '', { plaintext: o.plaintext !== false, context: contextOption(o) }),
        );
        const plaintext = key.plaintext?.toString('base64');
        key.plaintext?.fill(0);
        out.result(
          // Wrapped only: the ciphertext as `kms decrypt` takes it (argument or stdin), nothing else on the line.
          plaintext === undefined
            ? key.ciphertext
            : [`ciphertext: ${key.ciphertext}`, `plaintext:  ${plaintext}`].join('\n'),
          {
            ciphertext: key.ciphertext,
            keyVersion: key.keyVersion,
            ...(plaintext === undefined ? {} : { plaintext }),
          },
        );
      }),
    );

  contextOptions(
    kms
      .command('rewrap')
      .description("re-encrypt a ciphertext (argument or stdin) under its key's latest version")
      .argument('[ciphertext]', 'the ciphertext (default: read from stdin)'),
  )
    .option('--json', 'machine-readable output')
    .action(
      action(async (out, o, [text]) => {
        const ciphertext = await ciphertextArg(io, text);
        const rewrapped = await withClient(io, o, out, (c) => c.rewrap(ciphertext, contextOption(o)));
        out.result(rewrapped, { ciphertext: rewrapped });
      }),
    );

  kms
    .command('sign')
    .description('sign stdin or --in <file> (at most 64 KiB); prints the signature in base64')
    .argument('<key>', 'key name')
    .option('--in <file>', 'read the message from this file instead of stdin')
    .option('--json', 'machine-readable output')
    .action(
      action(async (out, o, [name]) => {
        const message = await readInput(io, o.in as string | undefined);
        const r = await withClient(io, o, out, (c) => c.sign(name ?? '', message));
        const signature = r.signature.toString('base64');
        out.result(signature, { signature, keyVersion: r.keyVersion });
      }),
    );

  kms
    .command('verify')
    .description('verify a signature over stdin or --in <file>; exits 4 when it does not verify')
    .argument('<key>', 'key name')
    .requiredOption('--signature <base64>', 'the signature')
    .option('--key-version <version>', 'key version (default: latest)')
    .option('--in <file>', 'read the message from this file instead of stdin')
    .option('--json', 'machine-readable output')
    .action(
      action(async (out, o, [name]) => {
        const signature = base64Option('--signature', o.signature as string);
        const version = intOption('--key-version', o.keyVersion as string | undefined, 1, 2 ** 32 - 1);
        const message = await readInput(io, o.in as string | undefined);
        const valid = await withClient(io, o, out, (c) => c.verify(name ?? '', message, signature, version));
        if (!valid)
          throw new CliError('invalid_signature', 'the signature does not verify', ExitCode.authentication);
        out.result('signature valid', { valid });
      }),
    );

  kms
    .command('hmac')
    .description('HMAC-SHA256 of stdin or --in <file> (at most 64 KiB); prints the tag in base64')
    .argument('<key>', 'key name')
    .option('--in <file>', 'read the data from this file instead of stdin')
    .option('--json', 'machine-readable output')
    .action(
      action(async (out, o, [name]) => {
        const data = await readInput(io, o.in as string | undefined);
        const r = await withClient(io, o, out, (c) => c.hmac(name ?? '', data));
        const mac = r.mac.toString('base64');
        out.result(mac, { mac, keyVersion: r.keyVersion });
      }),
    );

  kms
    .command('verify-hmac')
    .description('verify an HMAC-SHA256 tag over stdin or --in <file>; exits 4 when it does not verify')
    .argument('<key>', 'key name')
    .requiredOption('--mac <base64>', 'the tag')
    .option('--key-version <version>', 'key version (default: latest)')
    .option('--in <file>', 'read the data from this file instead of stdin')
    .option('--json', 'machine-readable output')
    .action(
      action(async (out, o, [name]) => {
        const tag = base64Option('--mac', o.mac as string);
        const version = intOption('--key-version', o.keyVersion as string | undefined, 1, 2 ** 32 - 1);
        const data = await readInput(io, o.in as string | undefined);
        const valid = await withClient(io, o, out, (c) => c.verifyHmac(name ?? '', data, tag, version));
        if (!valid) throw new CliError('invalid_mac', 'the HMAC does not verify', ExitCode.authentication);
        out.result('hmac valid', { valid });
      }),
    );

  kms
    .command('random')
    .description("random bytes from the KMS root of trust's generator")
    .argument('<bytes>', 'how many (1-1024)')
    .option('--hex', 'print hex instead of base64')
    .option('--json', 'machine-readable output')
    .action(
      action(async (out, o, [count]) => {
        const length = intOption('<bytes>', count, 1, 1024) ?? 0;
        const random = await withClient(io, o, out, (c) => c.random(length));
        const text = random.toString(o.hex === true ? 'hex' : 'base64');
        out.result(text, { random: random.toString('base64') });
      }),
    );
}

function registerOperator(program: Command, io: KmsCliIo): void {
  const operator = withConnectionOptions(
    program.command('operator').description('initialise, unseal and seal the KMS root of trust'),
  );
  const action = actionFor(io);

  operator
    .command('status')
    .description('show whether the root of trust is initialised and sealed (no token needed)')
    .option('--json', 'machine-readable output')
    .action(
      action(async (out, o) => {
        const status = await withClient(io, o, out, (c) => c.status(), false);
        out.result(describeStatus(status), status);
      }),
    );

  operator
    .command('init')
    .description('initialise the root of trust and print the unseal shares (shown once: distribute them)')
    .option('--shares <n>', 'shares to issue', '5')
    .option('--threshold <n>', 'shares needed to unseal', '3')
    .option('--json', 'machine-readable output')
    .action(
      action(async (out, o) => {
        const shares = intOption('--shares', o.shares as string, 1, 255) ?? 5;
        const threshold = intOption('--threshold', o.threshold as string, 1, 255) ?? 3;
        const r = await withClient(io, o, out, (c) => c.init({ shares, threshold }));
        out.result(
          [
            ...r.shares.map((s, i) => `share ${i + 1}: ${s}`),
            '',
            `The root of trust is initialised and sealed. Any ${threshold} of these ${shares} shares unseal it`,
            '(`warden operator unseal`, one share per operator). They are shown only now and are the only copy',
            'of the root key: hand each to a different operator and keep none together.',
          ].join('\n'),
          { shares: r.shares, threshold },
        );
      }),
    );

  operator
    .command('unseal')
    .description('give unseal shares: typed without echo on a terminal, or one per line on stdin')
    .option('--json', 'machine-readable output')
    .action(
      action(async (out, o) => {
        const shares =
          io.stdin.isTTY === true
            ? [await promptHidden(io, 'unseal share: ')]
            : (await readStdin(io, 64 * 1024))
                .toString('utf8')
                .split(/\r?\n/)
                .map((line) => line.trim())
                .filter((line) => line !== '');
        if (shares.length === 0 || shares.every((s) => s === ''))
          throw new CliError('usage', 'no share given on stdin', ExitCode.usage);
        const status = await withClient(
          io,
          o,
          out,
          async (c) => {
            let last: RootStatus | undefined;
            for (const share of shares) {
              last = await c.unseal(share);
              if (!last.sealed) break;
            }
            return last;
          },
          false,
        );
        if (status !== undefined) out.result(describeStatus(status), status);
      }),
    );

  operator
    .command('seal')
    .description('seal: wipe the root key and every unwrapped key from the server memory')
    .option('--json', 'machine-readable output')
    .action(
      action(async (out, o) => {
        const status = await withClient(io, o, out, (c) => c.seal());
        out.result(describeStatus(status), status);
      }),
    );
}

/** Registers `keys`, `kms` and `operator` on the `warden` program. */
export function registerKmsCommands(program: Command, io: Partial<KmsCliIo> = {}): void {
  const resolved: KmsCliIo = {
    stdin: io.stdin ?? process.stdin,
    stdout: io.stdout ?? process.stdout,
    stderr: io.stderr ?? process.stderr,
    env: io.env ?? process.env,
  };
  registerKeys(program, resolved);
  registerCrypto(program, resolved);
  registerOperator(program, resolved);
}

import { constants } from 'node:fs';
import { availableParallelism } from 'node:os';
import path from 'node:path';
import { access, open, stat } from 'node:fs/promises';
import type { ParseArgsOptionsConfig } from 'node:util';
import type { Command } from 'commander';
import {
  DEFAULT_CHUNK_EXPONENT,
  FILE_SUFFIX,
  MANIFEST_NAME,
  MAX_CHUNK_EXPONENT,
  MIN_CHUNK_EXPONENT,
  decryptDescriptor,
  decryptFile,
  decryptFileParallel,
  decryptTree,
  encryptDescriptor,
  encryptFile,
  encryptFileParallel,
  encryptTree,
  inspectFile,
  listTree,
  rewrapFile,
  slotLabel,
  treeEnvelopes,
} from '../../envelope/index.ts';
import type { EncryptionContext, ParsedHeader, ProgressCallback } from '../../envelope/index.ts';
import { LocalKeyring, defaultKeyringPath } from '../../keyring/index.ts';
import type { KmsSlots, SlotUnwrapper, SlotWrapper } from '../../envelope/index.ts';
import { CliError, ExitCode, classify } from '../exit-codes.ts';
import { createOutput, formatBytes, isTerminal } from '../output.ts';
import type { Output } from '../output.ts';

/** Files at least this large go through worker threads unless `--threads 1`. */
const PARALLEL_THRESHOLD = 256 * 1024 * 1024;

/**
 * Worker threads by default only for large files on machines with more than two CPUs: on two vCPUs (often SMT
 * siblings sharing one AES unit) one thread already runs at memory speed and workers were measured slower for
 * encryption (docs/benchmarks.md). `--threads` overrides either way.
 */
function useWorkers(threads: number | undefined, size: number): boolean {
  if (threads !== undefined) return threads > 1;
  return size >= PARALLEL_THRESHOLD && availableParallelism() > 2;
}

interface CommonOptions {
  output?: string;
  context: string[];
  json?: boolean;
  force?: boolean;
  threads?: string;
}

interface EncryptCliOptions extends CommonOptions {
  chunkSize: string;
  key?: string;
}

function parseContext(pairs: readonly string[]): EncryptionContext {
  const context: Record<string, string> = {};
  for (const pair of pairs) {
    const eq = pair.indexOf('=');
    if (eq <= 0)
      throw new CliError('usage', `--context takes key=value, got ${JSON.stringify(pair)}`, ExitCode.usage);
    const key = pair.slice(0, eq);
    if (Object.hasOwn(context, key))
      throw new CliError('usage', `--context ${key} given twice`, ExitCode.usage);
    context[key] = pair.slice(eq + 1);
  }
  return context;
}

function parseChunkSize(text: string): number {
  const match = /^(\d{1,9})(k|kib|m|mib)?$/i.exec(text.trim());
  const unit = match?.[2]?.toLowerCase().startsWith('m') ? 2 ** 20 : match?.[2] ? 2 ** 10 : 1;
  const bytes = match ? Number(match[1]) * unit : NaN;
  const exponent = Math.log2(bytes);
  if (!Number.isInteger(exponent) || exponent < MIN_CHUNK_EXPONENT || exponent > MAX_CHUNK_EXPONENT) {
    throw new CliError(
      'usage',
      `--chunk-size must be a power of two from 16KiB to 16MiB, got ${text}`,
      ExitCode.usage,
    );
  }
  return exponent;
}

function parseThreads(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1 || n > 64)
    throw new CliError('usage', '--threads must be 1-64', ExitCode.usage);
  return n;
}

async function exists(p: string): Promise<boolean> {
  try {
    await access(p, constants.F_OK);
    return true;
  } catch {
    return false;
  }
}

async function refuseOverwrite(target: string, force: boolean | undefined): Promise<void> {
  if (!force && (await exists(target))) {
    throw new CliError('output_exists', `${target} already exists (use --force to replace it)`, ExitCode.io);
  }
}

/**
 * `-` streams through the process's own descriptors, read and written in sequence (see envelope/descriptors.ts):
 * Node's stream objects for them are never created, so nothing else reads stdin or writes stdout meanwhile.
 */
const STDIN = 0;
const STDOUT = 1;

/** Runs `work` with a progress bar on a terminal's stderr (none otherwise), stopped however `work` ends. */
async function withProgress<T>(
  out: Output,
  label: string,
  total: number,
  work: (onProgress: ProgressCallback) => Promise<T>,
): Promise<T> {
  const bar = out.progress(label, total);
  try {
    const result = await work((done) => {
      bar.update(done);
    });
    // Decryption counts plaintext against the ciphertext's size, which is larger: finished is 100 %.
    bar.update(total);
    return result;
  } finally {
    bar.stop();
  }
}

/** Runs `fn` on a descriptor of `file` opened for reading, closed afterwards. */
async function withDescriptor<T>(file: string, fn: (fd: number) => Promise<T>): Promise<T> {
  const handle = await open(file, 'r');
  try {
    return await fn(handle.fd);
  } finally {
    await handle.close();
  }
}

/** KMS-backed key slots; the HTTP client is loaded only when a KMS is actually used. */
async function remoteKeys(out: Output, keyName?: string): Promise<KmsSlots> {
  const [{ remoteEnvelopeKeys }, { connect, kmsCliError }] = await Promise.all([
    import('../../client/index.ts'),
    import('./kms.ts'),
  ]);
  // Streams created only if used (a token prompt): see createOutput for why stdin and stdout are left alone.
  const io = {
    get stdin() {
      return process.stdin;
    },
    get stdout() {
      return process.stdout;
    },
    get stderr() {
      return process.stderr;
    },
    env: process.env,
  };
  // The KMS's refusals get the exit codes `warden kms …` gives them (unknown key 7, token 8, policy 9, sealed 10).
  return remoteEnvelopeKeys(await connect(io, {}, out), keyName, kmsCliError);
}

/**
 * The recipient of new envelopes: a KMS key (`--key` or WARDEN_KEY; data keys come from the KMS) or, without
 * one, the insecure development keyring (loudly).
 */
async function recipientFor(
  out: Output,
  keyName: string | undefined,
): Promise<{ recipient: SlotWrapper; keyring?: LocalKeyring }> {
  const name = keyName ?? process.env.WARDEN_KEY;
  if (name !== undefined && name !== '') return { recipient: await remoteKeys(out, name) };
  out.warn('no KMS key given (--key or WARDEN_KEY): using the development keyring');
  const keyring = await openKeyring(out, true);
  return { recipient: keyring, keyring };
}

/** Key providers for decryption: the KMS when a token is configured, and the dev keyring when it exists. */
async function unwrappersFor(out: Output): Promise<SlotUnwrapper[]> {
  const keys: SlotUnwrapper[] = [];
  if ((process.env.WARDEN_TOKEN ?? process.env.WARDEN_TOKEN_FILE ?? '') !== '') {
    keys.push(await remoteKeys(out));
  }
  try {
    keys.push((await LocalKeyring.open(defaultKeyringPath())).keyring);
  } catch (err) {
    if (keys.length === 0) throw err;
  }
  return keys;
}

async function openKeyring(out: Output, create: boolean): Promise<LocalKeyring> {
  const file = defaultKeyringPath();
  const { keyring, created } = await LocalKeyring.open(file, { create });
  if (created)
    out.warn(`created an INSECURE development keyring at ${file} (keys in clear; the KMS replaces it)`);
  return keyring;
}

function describeHeader(header: ParsedHeader) {
  return {
    formatVersion: 1,
    suite: 'AES-256-GCM / HKDF-SHA-512 / C2SP chunked',
    chunkSize: 2 ** header.chunkExponent,
    plaintextLength: header.plaintextLength ?? null,
    context: header.context,
    keySlots: header.slots.map((s) => ({ type: s.type, ref: s.ref, wrappedKeyBytes: s.wrappedKey.length })),
    headerLength: header.headerLength,
  };
}

function rate(bytes: number, started: number): string {
  const seconds = (performance.now() - started) / 1000;
  return `${formatBytes(bytes)} in ${seconds.toFixed(2)} s (${(bytes / 2 ** 20 / Math.max(seconds, 1e-6)).toFixed(0)} MiB/s)`;
}

async function runEncrypt(input: string, options: EncryptCliOptions): Promise<void> {
  if (input === '-' && options.output === undefined && isTerminal(STDOUT)) {
    // Ciphertext on a terminal is noise that can also upset it. As age does: `-o -` says the caller means it.
    throw new CliError(
      'usage',
      'refusing to write ciphertext to a terminal: redirect or pipe it, or pass -o - to force',
      ExitCode.usage,
    );
  }
  const out = createOutput(options.json ?? false);
  const context = parseContext(options.context);
  const chunkExponent = parseChunkSize(options.chunkSize);
  const threads = parseThreads(options.threads);
  // The input and output are checked before a key is resolved: a command that fails on them creates no
  // development keyring and asks the KMS for nothing.
  if (input === '-') {
    const target = options.output ?? '-';
    if (target !== '-') throw new CliError('usage', 'stdin encrypts to stdout only (-o -)', ExitCode.usage);
    const { recipient } = await recipientFor(out, options.key);
    await encryptDescriptor(STDIN, STDOUT, { recipients: [recipient], context, chunkExponent });
    return;
  }
  const info = await stat(input);
  const target = options.output ?? `${info.isDirectory() ? input.replace(/\/+$/, '') : input}${FILE_SUFFIX}`;
  if (info.isDirectory() && target === '-') {
    throw new CliError('usage', 'a directory encrypts to a directory, not to stdout', ExitCode.usage);
  }
  if (target !== '-') await refuseOverwrite(target, options.force);
  const { recipient, keyring } = await recipientFor(out, options.key);
  keyring?.assertOutside(input);
  const started = performance.now();

  if (info.isDirectory()) {
    const files = await encryptTree(input, target, { recipients: [recipient], context, chunkExponent });
    const bytes = files.reduce((n, f) => n + f.size, 0);
    out.result(`encrypted ${files.length} files from ${input} to ${target}/ (${rate(bytes, started)})`, {
      input,
      output: target,
      files: files.length,
      bytes,
      seconds: (performance.now() - started) / 1000,
    });
    return;
  }
  if (target === '-') {
    await withProgress(out, 'encrypt', info.size, (onProgress) =>
      withDescriptor(input, (fd) =>
        encryptDescriptor(fd, STDOUT, {
          recipients: [recipient],
          context,
          chunkExponent,
          plaintextLength: info.size,
          onProgress,
        }),
      ),
    );
    return;
  }
  const parallel = useWorkers(threads, info.size);
  const header = await withProgress(out, 'encrypt', info.size, (onProgress) => {
    const fileOptions = { recipients: [recipient], context, chunkExponent, onProgress };
    return parallel
      ? encryptFileParallel(input, target, { ...fileOptions, threads })
      : encryptFile(input, target, fileOptions);
  });
  out.result(`encrypted ${input} -> ${target} (${rate(info.size, started)})`, {
    input,
    output: target,
    bytes: info.size,
    seconds: (performance.now() - started) / 1000,
    header: describeHeader(header),
  });
}

async function runDecrypt(input: string, options: CommonOptions): Promise<void> {
  const out = createOutput(options.json ?? false);
  const expectedContext = parseContext(options.context);
  const threads = parseThreads(options.threads);
  // As in runEncrypt: the input and output are checked before any key provider is opened.
  if (input === '-') {
    const target = options.output ?? '-';
    if (target !== '-') throw new CliError('usage', 'stdin decrypts to stdout only (-o -)', ExitCode.usage);
    await decryptDescriptor(STDIN, STDOUT, { keys: await unwrappersFor(out), expectedContext });
    return;
  }
  const info = await stat(input);
  const stripped = input.replace(/\/+$/, '').endsWith(FILE_SUFFIX)
    ? input.replace(/\/+$/, '').slice(0, -FILE_SUFFIX.length)
    : undefined;
  const target = options.output ?? stripped;
  if (target === undefined) {
    throw new CliError(
      'usage',
      `cannot derive an output name from ${input} (no ${FILE_SUFFIX} suffix): pass -o`,
      ExitCode.usage,
    );
  }
  if (info.isDirectory() && target === '-') {
    throw new CliError(
      'usage',
      'an encrypted directory decrypts to a directory, not to stdout',
      ExitCode.usage,
    );
  }
  if (target !== '-') await refuseOverwrite(target, options.force);
  const keys = await unwrappersFor(out);
  const started = performance.now();
  if (info.isDirectory()) {
    const files = await decryptTree(input, target, { keys, expectedContext });
    const bytes = files.reduce((n, f) => n + f.size, 0);
    out.result(`decrypted ${files.length} files from ${input} to ${target}/ (${rate(bytes, started)})`, {
      input,
      output: target,
      files: files.length,
      bytes,
      seconds: (performance.now() - started) / 1000,
    });
    return;
  }
  if (target === '-') {
    await withProgress(out, 'decrypt', info.size, (onProgress) =>
      withDescriptor(input, (fd) => decryptDescriptor(fd, STDOUT, { keys, expectedContext, onProgress })),
    );
    return;
  }
  const parallel = useWorkers(threads, info.size);
  const header = await withProgress(out, 'decrypt', info.size, (onProgress) => {
    const fileOptions = { keys, expectedContext, onProgress };
    return parallel
      ? decryptFileParallel(input, target, { ...fileOptions, threads })
      : decryptFile(input, target, fileOptions);
  });
  const bytes = header.plaintextLength ?? (await stat(target)).size;
  out.result(`decrypted ${input} -> ${target} (${rate(bytes, started)})`, {
    input,
    output: target,
    bytes,
    seconds: (performance.now() - started) / 1000,
    header: describeHeader(header),
  });
}

async function runInspect(input: string, options: { json?: boolean }): Promise<void> {
  const out = createOutput(options.json ?? false);
  // An encrypted tree is described by its manifest's header (its file list is encrypted; the files are counted).
  const tree = (await stat(input)).isDirectory();
  const file = tree ? path.join(input, MANIFEST_NAME) : input;
  const { header, fileSize } = await inspectFile(file);
  const d = describeHeader(header);
  const files = tree ? (await listTree(input)).filter((f) => f.path !== MANIFEST_NAME).length : undefined;
  const lines = [
    ...(files === undefined
      ? []
      : [`${input}: Warden encrypted tree, ${files} encrypted file${files === 1 ? '' : 's'}; its manifest:`]),
    `${file}: Warden envelope v${d.formatVersion} (${formatBytes(fileSize)})`,
    `  suite:       ${d.suite}`,
    `  chunk size:  ${formatBytes(d.chunkSize)}`,
    `  plaintext:   ${d.plaintextLength === null ? 'length not declared (streamed)' : formatBytes(d.plaintextLength)}`,
    `  context:     ${Object.keys(d.context).length === 0 ? '(none)' : ''}`,
    ...Object.entries(d.context).map(([k, v]) => `    ${k} = ${v}`),
    `  key slots:`,
    ...header.slots.map((s) => `    ${slotLabel(s)} (${s.wrappedKey.length}-byte wrapped key)`),
  ];
  out.result(lines.join('\n'), {
    file,
    fileSize,
    ...(files === undefined ? {} : { tree: input, files }),
    ...d,
  });
}

async function runRewrap(inputs: string[], options: { json?: boolean }): Promise<void> {
  const out = createOutput(options.json ?? false);
  // An encrypted tree is every envelope in it, its manifest included.
  const files: string[] = [];
  for (const input of inputs) {
    // A path that cannot be read is reported with the files' results, as rewrapping it would be.
    const directory = await stat(input).then(
      (info) => info.isDirectory(),
      () => false,
    );
    files.push(...(directory ? await treeEnvelopes(input) : [input]));
  }
  const keys = await remoteKeys(out);
  const versions = (h: ParsedHeader) =>
    h.slots
      .filter((s) => s.type === 'kms')
      .map((s) => s.wrappedKey.toString('utf8').split(':').slice(2, 4).join('#'));
  const results = [];
  const lines = [];
  let firstFailure: ReturnType<typeof classify> | undefined;
  for (const file of files) {
    try {
      const { before, after, rewrapped } = await rewrapFile(file, { keys });
      results.push({ file, rewrapped, before: versions(before), after: versions(after) });
      lines.push(`${file}: ${versions(before).join(', ')} -> ${versions(after).join(', ')}`);
    } catch (err) {
      // A file that cannot be rewrapped does not stop the others, which would leave the caller guessing which
      // ones were: each is reported, and the exit code is the first failure's.
      const failure = classify(err);
      firstFailure ??= failure;
      results.push({ file, error: { code: failure.code, message: failure.message } });
      lines.push(`${file}: not rewrapped: ${failure.message}`);
    }
  }
  out.result(lines.join('\n'), { files: results });
  if (firstFailure !== undefined) {
    const failed = results.filter((r) => 'error' in r).length;
    throw new CliError(
      firstFailure.code,
      `${failed} of ${files.length} files were not rewrapped`,
      firstFailure.exitCode,
    );
  }
}

const collect = (value: string, previous: string[]) => [...previous, value];

/** One option of `warden encrypt`/`decrypt`, declared once for commander and for `directEnvelopeAction`. */
interface OptionSpec {
  readonly flags: string;
  readonly description: string;
  /** The long name, which is also the key (camel-cased, as commander does) in the options object. */
  readonly long: string;
  readonly short?: string;
  readonly takesValue: boolean;
  readonly repeatable?: boolean;
  readonly defaultValue?: string;
}

/** The options `encrypt` and `decrypt` share, last in both. */
const COMMON_OPTIONS: readonly OptionSpec[] = [
  {
    flags: '--threads <n>',
    description:
      'worker threads (default: all cores for files from 256 MiB on machines with more than 2 CPUs)',
    long: 'threads',
    takesValue: true,
  },
  {
    flags: '-f, --force',
    description: 'replace an existing output',
    long: 'force',
    short: 'f',
    takesValue: false,
  },
  { flags: '--json', description: 'machine-readable output', long: 'json', takesValue: false },
];

const encryptOptions: readonly OptionSpec[] = [
  {
    flags: '-o, --output <path>',
    description: 'output file or directory (default: <input>.wenc; - for stdout)',
    long: 'output',
    short: 'o',
    takesValue: true,
  },
  {
    flags: '-k, --key <name>',
    description: 'KMS key for the data key (default: $WARDEN_KEY; without one, the dev keyring)',
    long: 'key',
    short: 'k',
    takesValue: true,
  },
  {
    flags: '-c, --context <key=value>',
    description: 'authenticated encryption context entry (repeatable)',
    long: 'context',
    short: 'c',
    takesValue: true,
    repeatable: true,
  },
  {
    flags: '--chunk-size <size>',
    description: 'chunk size, a power of two from 16KiB to 16MiB',
    long: 'chunk-size',
    takesValue: true,
    defaultValue: `${2 ** (DEFAULT_CHUNK_EXPONENT - 20)}MiB`,
  },
  ...COMMON_OPTIONS,
];

const decryptOptions: readonly OptionSpec[] = [
  {
    flags: '-o, --output <path>',
    description: 'output file or directory (default: input without .wenc; - for stdout)',
    long: 'output',
    short: 'o',
    takesValue: true,
  },
  {
    flags: '-c, --context <key=value>',
    description: 'require this encryption context entry (repeatable)',
    long: 'context',
    short: 'c',
    takesValue: true,
    repeatable: true,
  },
  ...COMMON_OPTIONS,
];

function addOptions(command: Command, specs: readonly OptionSpec[]): Command {
  for (const spec of specs) {
    if (spec.repeatable) command.option(spec.flags, spec.description, collect, []);
    else if (spec.defaultValue !== undefined) command.option(spec.flags, spec.description, spec.defaultValue);
    else command.option(spec.flags, spec.description);
  }
  return command;
}

/** The same options for `util.parseArgs` (properties it does not need are left out: it validates them). */
function parseArgsOptions(specs: readonly OptionSpec[]): ParseArgsOptionsConfig {
  const options: ParseArgsOptionsConfig = {};
  for (const spec of specs) {
    options[spec.long] = {
      type: spec.takesValue ? 'string' : 'boolean',
      ...(spec.short === undefined ? {} : { short: spec.short }),
      ...(spec.repeatable ? { multiple: true, default: [] } : {}),
      ...(spec.defaultValue === undefined ? {} : { default: spec.defaultValue }),
    };
  }
  return options;
}

/*
 * Not `import … from 'node:util'`: an ESM import of a built-in evaluates every export, and node:util's many lazy
 * ones (parseArgs's siblings: MIME types, diffs, colours, …) cost ~2.4 MiB of RSS; the CommonJS object does not.
 */
const { parseArgs } = process.getBuiltinModule('node:util');

const camelCase = (name: string) => name.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());

/** A plain `encrypt`/`decrypt` command line, parsed as commander would; see `directEnvelopeAction`. */
export interface PlainEnvelopeCommand {
  readonly command: 'encrypt' | 'decrypt';
  readonly input: string;
  /** Keys and values exactly as commander's `opts()`: camel-cased long names, defaults filled in. */
  readonly options: Readonly<Record<string, string | boolean | string[]>>;
}

/**
 * Parses `args` (the command line after the program name) when it is a plain `encrypt` or `decrypt`: known
 * options only, well-formed (`util.parseArgs`, strict), exactly one input. Anything else — help, an unknown or
 * malformed option, a value that looks like an option, a missing or extra input — returns undefined.
 */
export function parsePlainEnvelopeCommand(args: readonly string[]): PlainEnvelopeCommand | undefined {
  const [command, ...rest] = args;
  if (command !== 'encrypt' && command !== 'decrypt') return undefined;
  let parsed: {
    values: Record<string, string | boolean | (string | boolean)[] | undefined>;
    positionals: string[];
  };
  try {
    parsed = parseArgs({
      args: rest,
      options: parseArgsOptions(command === 'encrypt' ? encryptOptions : decryptOptions),
      strict: true,
      allowPositionals: true,
    });
  } catch {
    return undefined;
  }
  const [input, ...extra] = parsed.positionals;
  if (input === undefined || extra.length > 0) return undefined;
  const options: Record<string, string | boolean | string[]> = {};
  for (const [key, value] of Object.entries(parsed.values)) {
    if (value !== undefined) options[camelCase(key)] = Array.isArray(value) ? value.map(String) : value;
  }
  return { command, input, options };
}

/**
 * `warden encrypt|decrypt` without commander: commander, with the `node:child_process` it imports, adds
 * ~3 MiB to the peak RSS of a command that otherwise only streams a file (docs/envelope.md). Returns the
 * command's action for a plain command line (`parsePlainEnvelopeCommand`), else undefined: commander then
 * parses it and reports usage errors and help as always, so the shortcut changes no outcome.
 */
export function directEnvelopeAction(args: readonly string[]): (() => Promise<void>) | undefined {
  const plain = parsePlainEnvelopeCommand(args);
  if (plain === undefined) return undefined;
  const { command, input, options } = plain;
  return command === 'encrypt'
    ? () => runEncrypt(input, options as unknown as EncryptCliOptions)
    : () => runDecrypt(input, options as unknown as CommonOptions);
}

export function registerEnvelopeCommands(program: Command): void {
  addOptions(
    program
      .command('encrypt')
      .description('encrypt a file, a directory tree, or stdin (-) into Warden envelopes')
      .argument('<input>', 'file, directory, or - for stdin'),
    encryptOptions,
  ).action(runEncrypt);

  addOptions(
    program
      .command('decrypt')
      .description('decrypt a Warden envelope file, an encrypted tree, or stdin (-)')
      .argument('<input>', 'file, directory, or - for stdin'),
    decryptOptions,
  ).action(runDecrypt);

  program
    .command('rewrap')
    .description(
      "re-wrap envelopes' data keys to their KMS key's latest version (changes only the header; the payload is copied as is)",
    )
    .argument('<inputs...>', 'envelope files or encrypted trees (every envelope in them)')
    .option('--json', 'machine-readable output')
    .action(runRewrap);

  program
    .command('inspect')
    .description("show an envelope's header, or an encrypted tree's (no key needed)")
    .argument('<input>', 'envelope file or encrypted tree')
    .option('--json', 'machine-readable output')
    .action(runInspect);
}

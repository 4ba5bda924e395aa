import { constants, createReadStream } from 'node:fs';
import { availableParallelism } from 'node:os';
import { access, stat } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import type { Command } from 'commander';
import {
  DEFAULT_CHUNK_EXPONENT,
  FILE_SUFFIX,
  MAX_CHUNK_EXPONENT,
  MIN_CHUNK_EXPONENT,
  decryptFile,
  decryptFileParallel,
  decryptStream,
  decryptTree,
  encryptFile,
  encryptFileParallel,
  encryptStream,
  encryptTree,
  inspectFile,
  rewrapFile,
  slotLabel,
} from '../../envelope/index.ts';
import type { EncryptionContext, ParsedHeader } from '../../envelope/index.ts';
import { LocalKeyring, defaultKeyringPath } from '../../keyring/index.ts';
import type { KmsSlots, SlotUnwrapper, SlotWrapper } from '../../envelope/index.ts';
import { CliError, ExitCode } from '../exit-codes.ts';
import { createOutput, formatBytes } from '../output.ts';
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

/** KMS-backed key slots; the HTTP client is loaded only when a KMS is actually used. */
async function remoteKeys(out: Output, keyName?: string): Promise<KmsSlots> {
  const [{ remoteEnvelopeKeys }, { connect }] = await Promise.all([
    import('../../client/index.ts'),
    import('./kms.ts'),
  ]);
  const io = { stdin: process.stdin, stdout: process.stdout, stderr: process.stderr, env: process.env };
  return remoteEnvelopeKeys(await connect(io, {}, out), keyName);
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
  const out = createOutput(options.json ?? false);
  const context = parseContext(options.context);
  const chunkExponent = parseChunkSize(options.chunkSize);
  const threads = parseThreads(options.threads);
  const { recipient, keyring } = await recipientFor(out, options.key);
  const started = performance.now();

  if (input === '-') {
    const target = options.output ?? '-';
    if (target !== '-') throw new CliError('usage', 'stdin encrypts to stdout only (-o -)', ExitCode.usage);
    await pipeline(
      process.stdin,
      (source: AsyncIterable<Buffer>) =>
        encryptStream(source, { recipients: [recipient], context, chunkExponent }),
      process.stdout,
    );
    return;
  }

  const info = await stat(input);
  if (info.isDirectory()) {
    keyring?.assertOutside(input);
    const target = options.output ?? `${input.replace(/\/+$/, '')}${FILE_SUFFIX}`;
    await refuseOverwrite(target, options.force);
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

  keyring?.assertOutside(input);
  const target = options.output ?? `${input}${FILE_SUFFIX}`;
  if (target === '-') {
    await pipeline(
      createReadStream(input, { highWaterMark: 2 ** chunkExponent }),
      (source: AsyncIterable<Buffer>) =>
        encryptStream(source, {
          recipients: [recipient],
          context,
          chunkExponent,
          plaintextLength: info.size,
        }),
      process.stdout,
    );
    return;
  }
  await refuseOverwrite(target, options.force);
  const bar = out.progress('encrypt', info.size);
  const parallel = useWorkers(threads, info.size);
  const fileOptions = {
    recipients: [recipient],
    context,
    chunkExponent,
    onProgress: (n: number) => {
      bar.update(n);
    },
  };
  let header: ParsedHeader;
  try {
    header = parallel
      ? await encryptFileParallel(input, target, { ...fileOptions, threads })
      : await encryptFile(input, target, fileOptions);
  } finally {
    bar.stop();
  }
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
  const keys = await unwrappersFor(out);
  const started = performance.now();

  if (input === '-') {
    const target = options.output ?? '-';
    if (target !== '-') throw new CliError('usage', 'stdin decrypts to stdout only (-o -)', ExitCode.usage);
    await pipeline(
      process.stdin,
      (source: AsyncIterable<Buffer>) => decryptStream(source, { keys, expectedContext }),
      process.stdout,
    );
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
  if (info.isDirectory()) {
    await refuseOverwrite(target, options.force);
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
    await pipeline(
      createReadStream(input, { highWaterMark: 1024 * 1024 }),
      (source: AsyncIterable<Buffer>) => decryptStream(source, { keys, expectedContext }),
      process.stdout,
    );
    return;
  }
  await refuseOverwrite(target, options.force);
  const bar = out.progress('decrypt', info.size);
  const parallel = useWorkers(threads, info.size);
  const fileOptions = {
    keys,
    expectedContext,
    onProgress: (n: number) => {
      bar.update(n);
    },
  };
  let header: ParsedHeader;
  try {
    header = parallel
      ? await decryptFileParallel(input, target, { ...fileOptions, threads })
      : await decryptFile(input, target, fileOptions);
  } finally {
    bar.stop();
  }
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
  const { header, fileSize } = await inspectFile(input);
  const d = describeHeader(header);
  const lines = [
    `${input}: Warden envelope v${d.formatVersion} (${formatBytes(fileSize)})`,
    `  suite:       ${d.suite}`,
    `  chunk size:  ${formatBytes(d.chunkSize)}`,
    `  plaintext:   ${d.plaintextLength === null ? 'length not declared (streamed)' : formatBytes(d.plaintextLength)}`,
    `  context:     ${Object.keys(d.context).length === 0 ? '(none)' : ''}`,
    ...Object.entries(d.context).map(([k, v]) => `    ${k} = ${v}`),
    `  key slots:`,
    ...header.slots.map((s) => `    ${slotLabel(s)} (${s.wrappedKey.length}-byte wrapped key)`),
  ];
  out.result(lines.join('\n'), { file: input, fileSize, ...d });
}

async function runRewrap(files: string[], options: { json?: boolean }): Promise<void> {
  const out = createOutput(options.json ?? false);
  const keys = await remoteKeys(out);
  const results = [];
  for (const file of files) {
    const { before, after, rewrapped } = await rewrapFile(file, { keys });
    const versions = (h: ParsedHeader) =>
      h.slots
        .filter((s) => s.type === 'kms')
        .map((s) => s.wrappedKey.toString('utf8').split(':').slice(2, 4).join('#'));
    results.push({ file, rewrapped, before: versions(before), after: versions(after) });
  }
  out.result(results.map((r) => `${r.file}: ${r.before.join(', ')} -> ${r.after.join(', ')}`).join('\n'), {
    files: results,
  });
}

const collect = (value: string, previous: string[]) => [...previous, value];

export function registerEnvelopeCommands(program: Command): void {
  program
    .command('encrypt')
    .description('encrypt a file, a directory tree, or stdin (-) into Warden envelopes')
    .argument('<input>', 'file, directory, or - for stdin')
    .option('-o, --output <path>', 'output file or directory (default: <input>.wenc; - for stdout)')
    .option(
      '-k, --key <name>',
      'KMS key for the data key (default: $WARDEN_KEY; without one, the dev keyring)',
    )
    .option('-c, --context <key=value>', 'authenticated encryption context entry (repeatable)', collect, [])
    .option(
      '--chunk-size <size>',
      'chunk size, a power of two from 16KiB to 16MiB',
      `${2 ** (DEFAULT_CHUNK_EXPONENT - 20)}MiB`,
    )
    .option(
      '--threads <n>',
      'worker threads (default: all cores for files from 256 MiB on machines with more than 2 CPUs)',
    )
    .option('-f, --force', 'replace an existing output')
    .option('--json', 'machine-readable output')
    .action(runEncrypt);

  program
    .command('decrypt')
    .description('decrypt a Warden envelope file, an encrypted tree, or stdin (-)')
    .argument('<input>', 'file, directory, or - for stdin')
    .option('-o, --output <path>', 'output file or directory (default: input without .wenc; - for stdout)')
    .option('-c, --context <key=value>', 'require this encryption context entry (repeatable)', collect, [])
    .option(
      '--threads <n>',
      'worker threads (default: all cores for files from 256 MiB on machines with more than 2 CPUs)',
    )
    .option('-f, --force', 'replace an existing output')
    .option('--json', 'machine-readable output')
    .action(runDecrypt);

  program
    .command('rewrap')
    .description("re-wrap envelopes' data keys to their KMS key's latest version (rewrites only the header)")
    .argument('<files...>', 'envelope files')
    .option('--json', 'machine-readable output')
    .action(runRewrap);

  program
    .command('inspect')
    .description('show an envelope header (no key needed)')
    .argument('<input>', 'envelope file')
    .option('--json', 'machine-readable output')
    .action(runInspect);
}

import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Command } from 'commander';
import { DecryptionError } from '../../crypto/index.ts';
import {
  EnvelopeFile,
  decryptFile,
  decryptTree,
  encryptFile,
  encryptTree,
  inspectFile,
} from '../../envelope/index.ts';
import { LocalKeyring, defaultKeyringPath } from '../../keyring/index.ts';
import { CliError, ExitCode } from '../exit-codes.ts';
import { createOutput, formatBytes } from '../output.ts';

/**
 * The quickstart's main job on embedded defaults: protect a model file and a training-data directory with the
 * development keyring, show what an envelope reveals without a key, load one "tensor" by authenticated random
 * access, decrypt and verify, and show that tampering is caught.
 */
async function runDemo(options: { dir: string; size: string; json?: boolean }): Promise<void> {
  const out = createOutput(options.json ?? false);
  const dir = path.resolve(options.dir);
  const sizeMiB = Number(options.size);
  if (!Number.isInteger(sizeMiB) || sizeMiB < 1 || sizeMiB > 4096)
    throw new CliError('usage', '--size must be 1-4096 (MiB)', ExitCode.usage);
  await prepareDemoDirectory(dir);
  await mkdir(path.join(dir, 'training-data', 'shard-a'), { recursive: true });
  const keyringFile = defaultKeyringPath();
  const { keyring, created } = await LocalKeyring.open(keyringFile, { create: true });
  if (created) out.warn(`created an INSECURE development keyring at ${keyringFile}`);
  keyring.assertOutside(dir);

  const model = path.join(dir, 'credit-model.safetensors');
  const modelBytes = randomBytes(sizeMiB * 2 ** 20);
  await writeFile(model, modelBytes);
  await writeFile(
    path.join(dir, 'training-data', 'applicants.csv'),
    'id,income,score\n1,52000,0.71\n2,38000,0.44\n',
  );
  await writeFile(path.join(dir, 'training-data', 'shard-a', 'labels.csv'), 'id,default\n1,0\n2,1\n');

  const context = { model: 'credit-scoring', stage: 'dev', owner: 'ml-platform' };
  let t = performance.now();
  await encryptFile(model, `${model}.wenc`, { recipients: [keyring], context });
  const encSeconds = (performance.now() - t) / 1000;
  await encryptTree(path.join(dir, 'training-data'), path.join(dir, 'training-data.wenc'), {
    recipients: [keyring],
    context: { dataset: 'applicants-2026' },
  });
  const { header } = await inspectFile(`${model}.wenc`);

  const offset = Math.floor(modelBytes.length / 3);
  t = performance.now();
  const file = await EnvelopeFile.open(`${model}.wenc`, {
    keys: [keyring],
    expectedContext: { model: 'credit-scoring' },
  });
  const tensor = await file.read(offset, offset + 65536);
  await file.close();
  const randomAccessMs = performance.now() - t;
  const tensorOk = tensor.equals(modelBytes.subarray(offset, offset + 65536));

  t = performance.now();
  await decryptFile(`${model}.wenc`, path.join(dir, 'credit-model.decrypted'), {
    keys: [keyring],
    expectedContext: context,
  });
  const decSeconds = (performance.now() - t) / 1000;
  const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
  const roundTrip = sha(await readFile(path.join(dir, 'credit-model.decrypted'))) === sha(modelBytes);
  await decryptTree(path.join(dir, 'training-data.wenc'), path.join(dir, 'training-data.decrypted'), {
    keys: [keyring],
  });

  const tampered = await readFile(`${model}.wenc`);
  tampered[tampered.length - 100] = (tampered[tampered.length - 100] ?? 0) ^ 0x01;
  await writeFile(path.join(dir, 'tampered.wenc'), tampered);
  let tamperCaught = false;
  try {
    await decryptFile(path.join(dir, 'tampered.wenc'), path.join(dir, 'tampered.out'), { keys: [keyring] });
  } catch (err) {
    tamperCaught = err instanceof DecryptionError;
  }

  const mibps = (s: number) => (modelBytes.length / 2 ** 20 / s).toFixed(0);
  const rel = (p: string) => path.relative(process.cwd(), path.join(dir, p)) || '.';
  out.result(
    [
      `Warden demo in ${dir}`,
      `  encrypted ${formatBytes(modelBytes.length)} model -> credit-model.safetensors.wenc (${mibps(encSeconds)} MiB/s)`,
      `  encrypted training-data/ -> training-data.wenc/ (per-file envelopes + encrypted manifest)`,
      `  header (readable without a key): chunk ${formatBytes(2 ** header.chunkExponent)}, context ${JSON.stringify(header.context)}`,
      `  random access: 64 KiB at offset ${offset} in ${randomAccessMs.toFixed(1)} ms, authenticated: ${tensorOk ? 'ok' : 'MISMATCH'}`,
      `  decrypted and verified SHA-256: ${roundTrip ? 'ok' : 'MISMATCH'} (${mibps(decSeconds)} MiB/s)`,
      `  one flipped bit in tampered.wenc: ${tamperCaught ? 'rejected, no output written' : 'NOT DETECTED'}`,
      '',
      'Try it yourself:',
      `  npx warden inspect ${rel('credit-model.safetensors.wenc')}`,
      `  npx warden decrypt ${rel('credit-model.safetensors.wenc')} -o model.bin -c stage=prod   # context mismatch, exit 6`,
      `  npx warden decrypt ${rel('tampered.wenc')} -o x.bin                                     # tampered, exit 4`,
      `  npx warden encrypt ${rel('training-data')} -o data.wenc -c purpose=training`,
      `  cat ${rel('training-data/applicants.csv')} | npx warden encrypt - | npx warden decrypt -`,
    ].join('\n'),
    {
      dir,
      modelBytes: modelBytes.length,
      encryptSeconds: encSeconds,
      decryptSeconds: decSeconds,
      randomAccessMs,
      tensorOk,
      roundTrip,
      tamperCaught,
    },
  );
  if (!tensorOk || !roundTrip || !tamperCaught) process.exitCode = 1;
}

/** Marks a directory `warden demo` made, so that a later run replaces it and never anything else. */
const DEMO_MARKER = '.warden-demo';

/**
 * Empties the demo directory of an earlier run, or creates it. A directory that exists, is not empty and was not
 * made by `warden demo` is refused: `--dir` names a path, and a mistyped one must not cost anyone their files.
 */
async function prepareDemoDirectory(dir: string): Promise<void> {
  const entries = await readdir(dir).catch((err: unknown) => {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  });
  if (entries !== undefined && entries.length > 0) {
    if (!entries.includes(DEMO_MARKER)) {
      throw new CliError(
        'output_exists',
        `${dir} exists and was not made by warden demo: choose another --dir, or remove it yourself`,
        ExitCode.io,
      );
    }
    await rm(dir, { recursive: true, force: true });
  }
  await mkdir(dir, { recursive: true });
  await writeFile(path.join(dir, DEMO_MARKER), 'made by `warden demo`, which replaces this directory\n');
}

export function registerDemoCommand(program: Command): void {
  program
    .command('demo')
    .description('run the main job end to end on embedded defaults (dev keyring, local files)')
    .option(
      '--dir <path>',
      'working directory for the demo (replaced when an earlier demo made it; any other non-empty directory is refused)',
      'warden-demo',
    )
    .option('--size <MiB>', 'size of the synthetic model file', '256')
    .option('--json', 'machine-readable output')
    .action(runDemo);
}

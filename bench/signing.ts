/**
 * OMS model signing throughput: hash + sign and verify a generated multi-GB model directory, next to sha256sum
 * (and openssl dgst) over the same files, one process per core, in the same run with the page cache warm.
 *
 *   ./node_modules/.bin/node bench/signing.ts [--files 4] [--mib 512] [--runs 3]
 *
 * The model is generated once into $TMPDIR/warden-signing-bench and reused while its layout matches.
 */
import { spawn } from 'node:child_process';
import { generateKeyPairSync, randomFillSync } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import { mkdir, open, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { localKeySigner, signModel, verifyModel, type SerializeOptions } from '../src/signing/index.ts';

const { values } = parseArgs({
  options: {
    files: { type: 'string', default: '4' },
    mib: { type: 'string', default: '512' },
    runs: { type: 'string', default: '3' },
  },
});
const FILES = Number(values.files);
const FILE_BYTES = Number(values.mib) * 1024 * 1024;
const RUNS = Number(values.runs);
const TOTAL = FILES * FILE_BYTES;
const DIR = path.join(os.tmpdir(), 'warden-signing-bench');
const cores = os.availableParallelism();

const fileName = (i: number): string =>
  `model-${String(i + 1).padStart(5, '0')}-of-${String(FILES).padStart(5, '0')}.safetensors`;

async function generate(): Promise<void> {
  const sizes = await Promise.all(
    Array.from({ length: FILES }, (_, i) =>
      stat(path.join(DIR, fileName(i))).then(
        (s) => s.size,
        () => -1,
      ),
    ),
  );
  const ok = sizes.every((s) => s === FILE_BYTES);
  if (ok && existsSync(path.join(DIR, 'config.json'))) return;
  console.log(`generating ${FILES} x ${values.mib} MiB under ${DIR} ...`);
  await rm(DIR, { recursive: true, force: true });
  await mkdir(DIR, { recursive: true });
  const chunk = Buffer.allocUnsafe(8 * 1024 * 1024);
  for (let i = 0; i < FILES; i++) {
    const fh = await open(path.join(DIR, fileName(i)), 'w');
    for (let written = 0; written < FILE_BYTES; written += chunk.length) {
      randomFillSync(chunk);
      await fh.write(chunk, 0, Math.min(chunk.length, FILE_BYTES - written));
    }
    await fh.close();
  }
  const cfg = await open(path.join(DIR, 'config.json'), 'w');
  await cfg.write('{"architecture":"bench"}\n');
  await cfg.close();
}

async function warm(): Promise<void> {
  for (let i = 0; i < FILES; i++) {
    await new Promise<void>((resolve, reject) => {
      createReadStream(path.join(DIR, fileName(i)), { highWaterMark: 8 * 1024 * 1024 })
        .on('data', () => undefined)
        .on('end', resolve)
        .on('error', reject);
    });
  }
}

/** Runs `cmd` over the model files split across one process per core; returns wall seconds and the digests. */
async function parallelTool(cmd: string, args: readonly string[]): Promise<{ seconds: number; out: string }> {
  const groups: string[][] = Array.from({ length: Math.min(cores, FILES) }, () => []);
  for (let i = 0; i < FILES; i++) groups[i % groups.length]!.push(path.join(DIR, fileName(i)));
  const start = performance.now();
  const outs = await Promise.all(
    groups.map(
      (files) =>
        new Promise<string>((resolve, reject) => {
          const child = spawn(cmd, [...args, ...files], { stdio: ['ignore', 'pipe', 'inherit'] });
          let out = '';
          child.stdout.on('data', (d: Buffer) => (out += d.toString()));
          child.on('error', reject);
          child.on('close', (code) => {
            if (code === 0) resolve(out);
            else reject(new Error(`${cmd} exited with ${code}`));
          });
        }),
    ),
  );
  return { seconds: (performance.now() - start) / 1000, out: outs.join('') };
}

const gbps = (seconds: number): string => `${(TOTAL / seconds / 1e9).toFixed(2)} GB/s`;
const row = (label: string, seconds: number, extra = ''): void => {
  console.log(
    `${label.padEnd(44)} ${seconds.toFixed(3).padStart(8)} s  ${gbps(seconds).padStart(11)}  ${extra}`,
  );
};

await generate();
await warm();
const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const signer = localKeySigner(privateKey);
console.log(
  `model: ${FILES} x ${values.mib} MiB = ${(TOTAL / 1e9).toFixed(2)} GB, ${cores} cores, Node ${process.version}, best of ${RUNS} interleaved rounds\n`,
);

const hasOpenssl = await new Promise<boolean>((resolve) => {
  spawn('openssl', ['version'], { stdio: 'ignore' })
    .on('error', () => {
      resolve(false);
    })
    .on('close', (code) => {
      resolve(code === 0);
    });
});

// The bundle verified below comes from a signing run outside the timed rounds.
const signed = await signModel(DIR, signer);
const bundle = JSON.stringify(signed.bundle);

// Every round runs every case once, so the baselines and signModel see the same background load; each case
// keeps its best time.
type Case = [label: string, run: () => Promise<unknown>];
const cases: Case[] = [
  ['sha256sum, one process per core', () => parallelTool('sha256sum', [])],
  ['signModel (files, sha256, P-256)', () => signModel(DIR, signer)],
];
if (hasOpenssl) {
  cases.push([
    'openssl dgst -sha256, one process per core',
    () => parallelTool('openssl', ['dgst', '-sha256']),
  ]);
}
const shards: SerializeOptions = { method: 'shards', shardSize: 128 * 1024 * 1024 };
cases.push(
  ['verifyModel (files, sha256, P-256)', () => verifyModel(DIR, bundle, { publicKey })],
  ['signModel, concurrency 1', () => signModel(DIR, signer, { concurrency: 1 })],
  ['signModel (shards of 128 MiB)', () => signModel(DIR, signer, shards)],
);
const times = new Map<string, number>();
const results = new Map<string, unknown>();
for (let r = 0; r < RUNS; r++) {
  for (const [label, run] of cases) {
    const start = performance.now();
    results.set(label, await run());
    const seconds = (performance.now() - start) / 1000;
    times.set(label, Math.min(times.get(label) ?? Infinity, seconds));
  }
}

// The manifest must agree with sha256sum, file by file.
const sums = results.get('sha256sum, one process per core') as { out: string };
const expected = new Map(
  sums.out
    .trim()
    .split('\n')
    .map((line) => {
      const [digest, file] = line.split(/\s+\*?/);
      return [path.basename(file ?? ''), digest];
    }),
);
for (const r of signed.statement.predicate.resources) {
  if (r.name !== 'config.json' && expected.get(r.name) !== r.digest)
    throw new Error(`digest mismatch for ${r.name}`);
}

const baseline = times.get('sha256sum, one process per core') ?? NaN;
const openssl = times.get('openssl dgst -sha256, one process per core');
for (const [label] of cases) {
  const seconds = times.get(label) ?? NaN;
  const vsSum = `${(baseline / seconds).toFixed(2)}x sha256sum`;
  const vsSsl = openssl === undefined ? '' : `, ${(openssl / seconds).toFixed(2)}x openssl`;
  row(label, seconds, label.startsWith('sha256sum') ? '' : vsSum + vsSsl);
}
const ratio = baseline / (times.get('signModel (files, sha256, P-256)') ?? NaN);
console.log(`\nhash+sign vs sha256sum (both on all ${cores} cores): ${ratio.toFixed(2)}x (target >= 0.9x)`);

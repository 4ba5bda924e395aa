/**
 * Envelope benchmark: encrypt/decrypt throughput (single thread and worker threads), peak RSS, and random-access
 * latency, each printed next to a baseline measured in the same run (raw AES-256-GCM over the same bytes, and
 * `age`) as a ratio. Output goes to /dev/null so the figures are those of Warden, not of this VM's page
 * allocator; page cache is warm. Size: BENCH_SIZE_MIB (default 2048). Each timing is the best of BENCH_RUNS (3).
 *
 * Two peak-RSS figures: the library's (envelope-child.js, the timed runs above: build + dev keyring, no CLI)
 * and the `warden encrypt` / `warden decrypt` command's own process (bin/warden.js -> dist/cli, file to file,
 * one thread, measured by GNU time), which also carries the CLI (commander, output) and writes a real file; the
 * command is measured on the 2 GiB file and on a sparse 10 GiB one (BENCH_LARGE_GIB), the size the memory
 * bound names. Each run also reports how many cores it kept busy.
 */
import { spawnSync } from 'node:child_process';
import {
  createWriteStream,
  existsSync,
  mkdirSync,
  readFileSync,
  rmSync,
  statSync,
  statfsSync,
  truncateSync,
  writeFileSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';

const sizeMiB = Number(process.env.BENCH_SIZE_MIB ?? 2048);
const runs = Number(process.env.BENCH_RUNS ?? 3);
const bytes = sizeMiB * 2 ** 20;
const dir = path.join(os.tmpdir(), 'warden-bench');
const input = path.join(dir, `plain-${sizeMiB}MiB.bin`);
const sealed = `${input}.wenc`;
const keyring = path.join(dir, 'bench-keyring.json');
const child = path.join(import.meta.dirname, 'envelope-child.js');
const launcher = path.join(import.meta.dirname, '..', 'bin', 'warden.js');
const launcherEnv = {
  ...process.env,
  MALLOC_MMAP_THRESHOLD_: '33554432',
  MALLOC_TRIM_THRESHOLD_: '268435456',
};

interface Measurement {
  seconds: number;
  /** CPU time of all the process's threads during the timed part. */
  cpuSeconds: number;
  peakRssMiB: number;
  openMs?: number;
  p50Ms?: number;
  p99Ms?: number;
  maxMs?: number;
  reads?: number;
}

function run(mode: string, file: string, output = ''): Measurement {
  const r = spawnSync(process.execPath, ['--expose-gc', child, mode, file, keyring, output], {
    env: launcherEnv,
    encoding: 'utf8',
  });
  if (r.status !== 0) throw new Error(`${mode} failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as Measurement;
}

function best(mode: string, file: string): Measurement {
  const all = Array.from({ length: runs }, () => run(mode, file));
  return all.reduce((a, b) => (b.seconds < a.seconds ? b : a));
}

/**
 * Peak RSS in MiB of one `warden` command run the way the launcher runs it (its shebang's Node flags and glibc
 * settings; Node itself is this one, so a system Node older than 24 does not add a re-exec).
 */
function cliPeakRssMiB(args: string[]): number {
  const r = spawnSync('/usr/bin/time', ['-f', '%M', process.execPath, '--expose-gc', launcher, ...args], {
    env: { ...launcherEnv, WARDEN_KEYRING: keyring, WARDEN_KEY: '', WARDEN_TOKEN: '', WARDEN_TOKEN_FILE: '' },
    encoding: 'utf8',
  });
  if (r.error !== undefined)
    throw new Error(`GNU time is required (Debian package "time"): ${r.error.message}`);
  if (r.status !== 0) throw new Error(`warden ${args.join(' ')} failed: ${r.stderr}`);
  return Number(r.stderr.trim().split('\n').at(-1)) / 1024;
}

function timeCommand(cmd: string, args: string[]): number {
  let fastest = Infinity;
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    const r = spawnSync(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${String(r.stderr)}`);
    fastest = Math.min(fastest, (performance.now() - t) / 1000);
  }
  return fastest;
}

async function generate(): Promise<void> {
  mkdirSync(dir, { recursive: true });
  if (existsSync(input) && statSync(input).size === bytes) return;
  const out = createWriteStream(input);
  for (let written = 0; written < bytes; written += 64 * 2 ** 20) {
    if (!out.write(randomBytes(Math.min(64 * 2 ** 20, bytes - written)))) await once(out, 'drain');
  }
  out.end();
  await once(out, 'finish');
}

function warm(file: string): void {
  spawnSync('cat', [file], { stdio: ['ignore', 'ignore', 'ignore'] });
}

await generate();
warm(input);
if (!existsSync(sealed) || statSync(sealed).mtimeMs < statSync(input).mtimeMs) run('prepare', input, sealed);
warm(sealed);

const gbps = (seconds: number) => bytes / seconds / 1e9;
const busy = (m: Measurement) => m.cpuSeconds / m.seconds;
const raw = best('raw', input);
const enc = best('encrypt', input);
const dec = best('decrypt', sealed);
const penc = best('encrypt-parallel', input);
const pdec = best('decrypt-parallel', sealed);
const random = run('random', sealed);

/**
 * The memory bound is stated for a 10 GB file: `warden encrypt` / `decrypt` file to file on a sparse input
 * of BENCH_LARGE_GIB (default 10; 0 skips), so only the outputs take disk space (removed afterwards).
 */
function largeCliRss(): { gib: number; enc: number; dec: number } | undefined {
  const gib = Number(process.env.BENCH_LARGE_GIB ?? 10);
  if (gib === 0) return undefined;
  const free = statfsSync(dir);
  if (free.bavail * free.bsize < 2.1 * gib * 2 ** 30)
    throw new Error(`the ${gib} GiB run needs ${2.1 * gib} GiB free in ${dir} (BENCH_LARGE_GIB=0 skips it)`);
  const sparse = path.join(dir, `sparse-${gib}GiB.bin`);
  const large = `${sparse}.wenc`;
  const back = `${sparse}.out`;
  try {
    writeFileSync(sparse, '');
    truncateSync(sparse, gib * 2 ** 30);
    const enc = cliPeakRssMiB(['encrypt', sparse, '-o', large, '--force', '--threads', '1', '--json']);
    const dec = cliPeakRssMiB(['decrypt', large, '-o', back, '--force', '--threads', '1', '--json']);
    if (statSync(back).size !== gib * 2 ** 30) throw new Error('the large round trip lost bytes');
    return { gib, enc, dec };
  } finally {
    for (const f of [sparse, large, back]) rmSync(f, { force: true });
  }
}

const cliSealed = path.join(dir, `cli-${sizeMiB}MiB.wenc`);
const cliPlain = path.join(dir, `cli-${sizeMiB}MiB.bin`);
let cliEncRss: number;
let cliDecRss: number;
try {
  cliEncRss = cliPeakRssMiB(['encrypt', input, '-o', cliSealed, '--force', '--threads', '1', '--json']);
  cliDecRss = cliPeakRssMiB(['decrypt', cliSealed, '-o', cliPlain, '--force', '--threads', '1', '--json']);
} finally {
  rmSync(cliSealed, { force: true });
  rmSync(cliPlain, { force: true });
}

const large = largeCliRss();

const ageDir = path.join(dir, 'age');
mkdirSync(ageDir, { recursive: true });
const ageKey = path.join(ageDir, 'key.txt');
if (!existsSync(ageKey)) spawnSync('age-keygen', ['-o', ageKey], { stdio: 'ignore' });
const recipient = /public key: (\S+)/.exec(readFileSync(ageKey, 'utf8'))?.[1];
if (recipient === undefined) throw new Error('age-keygen is required (Debian package "age")');
const ageSealed = path.join(ageDir, `sealed-${sizeMiB}MiB.age`);
if (!existsSync(ageSealed)) spawnSync('age', ['-r', recipient, '-o', ageSealed, input]);
warm(ageSealed);
const ageEnc = timeCommand('age', ['-r', recipient, '-o', '/dev/null', input]);
const ageDec = timeCommand('age', ['-d', '-i', ageKey, '-o', '/dev/null', ageSealed]);

const rows: [string, string, string, string][] = [
  ['raw AES-256-GCM, 1 MiB steps (baseline)', `${gbps(raw.seconds).toFixed(2)} GB/s`, '1.00', ''],
  [
    'encrypt, 1 thread',
    `${gbps(enc.seconds).toFixed(2)} GB/s`,
    (raw.seconds / enc.seconds).toFixed(2),
    'target >= 0.75 of raw',
  ],
  [
    'decrypt, 1 thread',
    `${gbps(dec.seconds).toFixed(2)} GB/s`,
    (raw.seconds / dec.seconds).toFixed(2),
    'target >= 0.75 of raw',
  ],
  ['age encrypt (baseline)', `${gbps(ageEnc).toFixed(2)} GB/s`, '', ''],
  ['age decrypt (baseline)', `${gbps(ageDec).toFixed(2)} GB/s`, '', ''],
  ['encrypt vs age', '', (ageEnc / enc.seconds).toFixed(2), 'target >= 2x'],
  ['decrypt vs age', '', (ageDec / dec.seconds).toFixed(2), 'target >= 2x'],
  [
    'encrypt, 2 worker threads',
    `${gbps(penc.seconds).toFixed(2)} GB/s`,
    (enc.seconds / penc.seconds).toFixed(2),
    'vs 1 thread, target >= 1.6',
  ],
  [
    'decrypt, 2 worker threads',
    `${gbps(pdec.seconds).toFixed(2)} GB/s`,
    (dec.seconds / pdec.seconds).toFixed(2),
    'vs 1 thread, target >= 1.6',
  ],
  [
    'cores busy, 1 thread: encrypt / decrypt',
    `${busy(enc).toFixed(2)} / ${busy(dec).toFixed(2)}`,
    '',
    // The "1 thread" path already reads ahead on libuv's pool while it encrypts: with CPU time per byte fixed,
    // no split of the same work over this machine's cores can beat it by more than cores / cores busy.
    `ceiling for any ${os.availableParallelism()}-core mode: ${(os.availableParallelism() / busy(enc)).toFixed(2)}x / ${(os.availableParallelism() / busy(dec)).toFixed(2)}x`,
  ],
  [
    'cores busy, 2 worker threads: enc / dec',
    `${busy(penc).toFixed(2)} / ${busy(pdec).toFixed(2)}`,
    '',
    `CPU per GB vs 1 thread: ${(penc.cpuSeconds / enc.cpuSeconds).toFixed(2)}x / ${(pdec.cpuSeconds / dec.cpuSeconds).toFixed(2)}x`,
  ],
  [
    'peak RSS library encrypt / decrypt',
    `${enc.peakRssMiB.toFixed(1)} / ${dec.peakRssMiB.toFixed(1)} MiB`,
    '',
    'target < 64 MiB',
  ],
  [
    'peak RSS `warden encrypt` / `decrypt`',
    `${cliEncRss.toFixed(1)} / ${cliDecRss.toFixed(1)} MiB`,
    '',
    'CLI process, file to file, 1 thread',
  ],
  ...(large === undefined
    ? []
    : ([
        [
          `peak RSS \`warden\` enc / dec, ${large.gib} GiB`,
          `${large.enc.toFixed(1)} / ${large.dec.toFixed(1)} MiB`,
          '',
          'target < 64 MiB (sparse input, file to file)',
        ],
      ] as [string, string, string, string][])),
  ['peak RSS raw baseline process', `${raw.peakRssMiB.toFixed(1)} MiB`, '', ''],
  [
    'random 1 MiB read p50 / p99 / max',
    `${random.p50Ms?.toFixed(2)} / ${random.p99Ms?.toFixed(2)} / ${random.maxMs?.toFixed(1)} ms`,
    '',
    `target < 5 ms (${random.reads} reads; open: ${random.openMs?.toFixed(1)} ms)`,
  ],
];
console.log(
  `Warden envelope benchmark: ${sizeMiB} MiB file, page cache warm, best of ${runs}, ${os.cpus().length} cores, Node ${process.version}`,
);
const width = [40, 20, 7];
for (const [name, figure, ratio, note] of rows) {
  console.log(
    `${name.padEnd(width[0]!)} ${figure.padStart(width[1]!)} ${ratio.padStart(width[2]!)}  ${note}`,
  );
}

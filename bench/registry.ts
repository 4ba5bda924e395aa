/**
 * Registry throughput, each figure next to a baseline measured in the same run:
 *
 * - hash + sign (OMS files and shards, key held by a real KmsService) of a generated multi-GB model directory, in
 *   GB/s, against `sha256sum` over the same files run by `xargs -P <cores>`; the ratio is the target (>= 0.9x);
 * - verification (`verifyModel`, re-hashing every file) time;
 * - registration through the Registry (hash, scan, envelope-encrypt under a KMS data key, store, record);
 * - scanner throughput on a large benign pickle (MB/s), next to a streaming SHA-256 of the same file.
 *
 *   ./node_modules/.bin/node bench/registry.ts [--files 4] [--mib 512] [--runs 2] [--pickle-mib 200] [--no-register]
 *
 * The model is generated once into $TMPDIR/warden-registry-bench and reused while its layout matches.
 * bench/signing.ts measures signModel with a local key against sha256sum and openssl in more detail;
 * bench/scanner.ts scans a torch-like checkpoint; this bench puts the registry's pieces side by side.
 */
import { execFileSync, spawn } from 'node:child_process';
import { createHash, randomFillSync } from 'node:crypto';
import { createReadStream, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { mkdir, open, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { BuiltInRoleAuthorizer, KmsService, SoftwareRootOfTrust, type Principal } from '../src/kms/index.ts';
import {
  ArtifactVault,
  FsBlobStore,
  kmsModelSigner,
  kmsRegistryKeys,
  Registry,
  RegistryRepository,
  type RegistrySchema,
} from '../src/registry/index.ts';
import { scanFile } from '../src/scanner/index.ts';
import { signModel, verifyModel, type SerializeOptions } from '../src/signing/index.ts';
import { openStore } from '../src/store/index.ts';
import { MemoryKmsRepository } from '../test/support/memory-kms-repository.ts';

const { values } = parseArgs({
  options: {
    files: { type: 'string', default: '4' },
    mib: { type: 'string', default: '512' },
    runs: { type: 'string', default: '2' },
    'pickle-mib': { type: 'string', default: '200' },
    'no-register': { type: 'boolean', default: false },
  },
});
const FILES = Number(values.files);
const FILE_BYTES = Number(values.mib) * 1024 * 1024;
const RUNS = Number(values.runs);
const TOTAL = FILES * FILE_BYTES;
const DIR = path.join(os.tmpdir(), 'warden-registry-bench');
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
  if (sizes.every((s) => s === FILE_BYTES) && existsSync(path.join(DIR, 'config.json'))) return;
  console.log(`generating ${FILES} x ${values.mib} MiB of random bytes under ${DIR} ...`);
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

function readThrough(file: string, onChunk: (b: Buffer) => void = () => undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    createReadStream(file, { highWaterMark: 8 * 1024 * 1024 })
      .on('data', (b) => {
        onChunk(b as Buffer);
      })
      .on('end', resolve)
      .on('error', reject);
  });
}

/** `ls files | xargs -P cores -n 1 sha256sum`: one sha256sum per file, as many at once as there are cores. */
function xargsSha256sum(): Promise<void> {
  return new Promise((resolve, reject) => {
    const files = Array.from({ length: FILES }, (_, i) => path.join(DIR, fileName(i)));
    const child = spawn('xargs', ['-0', '-P', String(cores), '-n', '1', 'sha256sum'], {
      stdio: ['pipe', 'ignore', 'inherit'],
    });
    child.on('error', reject);
    child.on('close', (code) => {
      if (code === 0) resolve();
      else reject(new Error(`xargs exited with ${code}`));
    });
    child.stdin.end(files.join('\0'));
  });
}

async function best(fn: () => Promise<unknown>): Promise<number> {
  let min = Infinity;
  for (let r = 0; r < RUNS; r++) {
    const start = performance.now();
    await fn();
    min = Math.min(min, (performance.now() - start) / 1000);
  }
  return min;
}

const gbps = (bytes: number, seconds: number): string => `${(bytes / seconds / 1e9).toFixed(2)} GB/s`;
const row = (label: string, seconds: number, rate: string, extra = ''): void => {
  console.log(`${label.padEnd(50)} ${seconds.toFixed(3).padStart(8)} s  ${rate.padStart(12)}  ${extra}`);
};

await generate();
for (let i = 0; i < FILES; i++) await readThrough(path.join(DIR, fileName(i)));

// A real KMS (in-memory repository, dev root) holding the P-256 signing key and the artifact data key.
const work = mkdtempSync(path.join(os.tmpdir(), 'warden-registry-bench-state-'));
const admin: Principal = { id: 'user:bench', roles: ['admin'], authMethod: 'bench' };
const kms = new KmsService({
  repository: new MemoryKmsRepository(),
  root: await SoftwareRootOfTrust.openDevMode(path.join(work, 'dev-root.key')),
  audit: { record: () => Promise.resolve(), close: () => Promise.resolve() },
  authorizer: new BuiltInRoleAuthorizer(),
});
await kms.createKey(admin, { name: 'bench-signing', type: 'ecdsa-p256' });
await kms.createKey(admin, { name: 'bench-data', type: 'aes256-gcm' });
const signer = await kmsModelSigner(kms, admin, 'bench-signing');
const { pem } = await kms.publicKey(admin, 'bench-signing');

console.log(
  `model: ${FILES} x ${values.mib} MiB = ${(TOTAL / 1e9).toFixed(2)} GB, ${cores} cores, Node ${process.version}, best of ${RUNS}\n`,
);
const baseline = await best(xargsSha256sum);
row(`sha256sum via xargs -P ${cores} (baseline)`, baseline, gbps(TOTAL, baseline));
const shards: SerializeOptions = { method: 'shards', shardSize: 128 * 1024 * 1024 };
const files = await best(() => signModel(DIR, signer));
row(
  'hash + sign, OMS files, KMS P-256 key',
  files,
  gbps(TOTAL, files),
  `${(baseline / files).toFixed(2)}x sha256sum`,
);
const sharded = await best(() => signModel(DIR, signer, shards));
row(
  'hash + sign, OMS shards (128 MiB), KMS P-256 key',
  sharded,
  gbps(TOTAL, sharded),
  `${(baseline / sharded).toFixed(2)}x sha256sum`,
);
const { bundle } = await signModel(DIR, signer);
const verify = await best(() => verifyModel(DIR, bundle, { publicKey: pem }));
row(
  'verifyModel (bundle + re-hash every file)',
  verify,
  gbps(TOTAL, verify),
  `${(baseline / verify).toFixed(2)}x sha256sum`,
);

if (!values['no-register']) {
  const store = await openStore<RegistrySchema>({ kind: 'sqlite', path: path.join(work, 'registry.db') });
  const blobs = await FsBlobStore.open(path.join(work, 'blobs'));
  const { keys, signer: registrySigner } = kmsRegistryKeys(kms, admin, {
    dataKeyName: 'bench-data',
    signingKeyName: 'bench-signing',
  });
  const registry = new Registry({
    repository: await RegistryRepository.open(store),
    vault: new ArtifactVault(blobs, keys),
    audit: { record: () => Promise.resolve(), close: () => Promise.resolve() },
    authorize: () => Promise.resolve(),
    trustedSigners: [{ id: 'bench', trust: { publicKey: pem } }],
    signer: registrySigner,
    stagingDir: path.join(work, 'staging'),
  });
  const start = performance.now();
  await registry.registerModelVersion(admin, { model: 'bench', version: '1', dir: DIR });
  const register = (performance.now() - start) / 1000;
  row(
    'Registry.registerModelVersion (hash+scan+encrypt)',
    register,
    gbps(TOTAL, register),
    `${(baseline / register).toFixed(2)}x sha256sum`,
  );
  const s0 = performance.now();
  await registry.sign(admin, 'bench', '1');
  row('Registry.sign (over stored digests)', (performance.now() - s0) / 1000, '-');
  const deep = await best(() => registry.verify(admin, 'bench', '1', { deep: true }));
  row(
    'Registry.verify --deep (decrypt + re-hash)',
    deep,
    gbps(TOTAL, deep),
    `${(baseline / deep).toFixed(2)}x sha256sum`,
  );
  await store.close();
}

// Scanner: a large benign protocol-4 pickle (state dict of float lists and byte blobs), python3's pickle.
const pickleDir = mkdtempSync(path.join(os.tmpdir(), 'warden-registry-bench-pickle-'));
const pickleFile = path.join(pickleDir, 'state.pkl');
execFileSync('python3', [
  '-c',
  `import pickle, random, collections, sys
rnd = random.Random(1); target = int(sys.argv[2]); sd = collections.OrderedDict(); size = 0; i = 0
while size < target:
    blob = rnd.randbytes(rnd.randint(1024, 65536)); sd['layer.%06d' % i] = {'w': blob, 'stats': [rnd.random() for _ in range(64)]}; size += len(blob) + 600; i += 1
open(sys.argv[1], 'wb').write(pickle.dumps(sd, protocol=4))`,
  pickleFile,
  String(Number(values['pickle-mib']) * 1024 * 1024),
]);
const pickleBytes = (await stat(pickleFile)).size;
await readThrough(pickleFile);
const sha = await best(() =>
  readThrough(
    pickleFile,
    (() => {
      const h = createHash('sha256');
      return (b: Buffer) => h.update(b);
    })(),
  ),
);
const scan = await best(() => scanFile(pickleFile));
const mbps = (seconds: number): string => `${(pickleBytes / seconds / 1e6).toFixed(0)} MB/s`;
console.log(`\nbenign pickle: ${(pickleBytes / 1e6).toFixed(0)} MB`);
row('SHA-256, streaming (baseline)', sha, mbps(sha));
row('scanFile', scan, mbps(scan), `${(sha / scan).toFixed(2)}x SHA-256`);

rmSync(pickleDir, { recursive: true, force: true });
rmSync(work, { recursive: true, force: true });

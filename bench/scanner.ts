/**
 * Scanner throughput on a large benign pickle, next to baselines measured in the same run over the same file:
 * a raw read and a SHA-256 (both streaming). Usage: node bench/scanner.ts [sizeMB=200] [runs=3]
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { scanBuffer, scanFile } from '../src/scanner/index.ts';

const sizeMB = Number(process.argv[2] ?? 200);
const runs = Number(process.argv[3] ?? 3);

/**
 * A torch-like checkpoint of many small records: a 64-character name (BINUNICODE), a 256 B-4 KB blob
 * (BINBYTES), a small tensor rebuilt through allow-listed torch globals with a persistent id, and 32 floats.
 * Fake torch modules make the pickler emit the real global names without torch installed.
 */
const generator = `
import sys, os, pickle, random, types
from collections import OrderedDict
out, target = sys.argv[1], int(sys.argv[2])
torch = types.ModuleType('torch'); sys.modules['torch'] = torch
tu = types.ModuleType('torch._utils'); sys.modules['torch._utils'] = tu; torch._utils = tu
def _rebuild_tensor_v2(*a): pass
_rebuild_tensor_v2.__module__ = 'torch._utils'; tu._rebuild_tensor_v2 = _rebuild_tensor_v2
class FloatStorage: pass
FloatStorage.__module__ = 'torch'; torch.FloatStorage = FloatStorage
class S:
    def __init__(self, k): self.k = k
class T:
    def __init__(self, k): self.s = S(k)
    def __reduce__(self): return (_rebuild_tensor_v2, (self.s, 0, (4, 4), (4, 1), False, OrderedDict()))
class P(pickle.Pickler):
    def persistent_id(self, o):
        return ('storage', FloatStorage, o.k, 'cpu', 16) if isinstance(o, S) else None
rnd = random.Random(1)
sd, size, i = OrderedDict(), 0, 0
while size < target:
    blob = rnd.randbytes(rnd.randint(256, 4096))
    sd['layer.%06d.%s' % (i, 'x' * 48)] = {'blob': blob, 'tensor': T(str(i)), 'stats': [rnd.random() for _ in range(32)]}
    size += len(blob) + 420
    i += 1
with open(out, 'wb') as f:
    P(f, protocol=4).dump(sd)
`;

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const best: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = process.hrtime.bigint();
    await fn();
    best.push(Number(process.hrtime.bigint() - t0) / 1e9);
  }
  return Math.min(...best);
}

function stream(file: string, onChunk: (b: Buffer) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    createReadStream(file, { highWaterMark: 4 << 20 })
      .on('data', (b) => {
        onChunk(b as Buffer);
      })
      .on('end', resolve)
      .on('error', reject);
  });
}

const dir = mkdtempSync(path.join(os.tmpdir(), 'warden-bench-'));
try {
  const file = path.join(dir, 'checkpoint.pkl');
  execFileSync('python3', ['-c', generator, file, String(sizeMB * 1024 * 1024)]);
  const bytes = statSync(file).size;
  const mb = bytes / (1024 * 1024);
  console.log(`file: ${mb.toFixed(1)} MiB benign protocol-4 pickle; best of ${runs} runs`);

  const read = await timed(() => stream(file, () => undefined));
  const sha = await timed(async () => {
    const h = createHash('sha256');
    await stream(file, (b) => h.update(b));
    h.digest();
  });
  let verdict = '';
  const scanF = await timed(async () => {
    verdict = (await scanFile(file)).verdict;
  });
  const buf = readFileSync(file);
  const scanB = await timed(() => scanBuffer(buf));
  if (verdict !== 'clean') throw new Error(`benchmark file scanned as ${verdict}`);

  const rows: [string, number][] = [
    ['raw read (stream)', read],
    ['sha256 (stream)', sha],
    ['scanFile', scanF],
    ['scanBuffer (in memory)', scanB],
  ];
  for (const [name, s] of rows) {
    console.log(
      `${name.padEnd(24)} ${(mb / s).toFixed(0).padStart(6)} MB/s  ${(s * 1000).toFixed(0).padStart(6)} ms`,
    );
  }
  console.log(`scanFile / sha256 throughput ratio: ${(sha / scanF).toFixed(2)}`);
  console.log(`scanFile / raw read throughput ratio: ${(read / scanF).toFixed(2)}`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}

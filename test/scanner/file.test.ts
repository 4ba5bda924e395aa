import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { scanBuffer, scanFile, scanSource, type ByteSource } from '../../src/scanner/index.ts';
import { PickleWalker, type WalkStatus } from '../../src/scanner/pickle/walker.ts';
import { DEFAULT_LIMITS } from '../../src/scanner/rules.ts';
import { python, ruleIds } from './helpers.ts';

let dir = '';
before(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'warden-scanner-file-'));
});
after(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** A source of `size` bytes: `head` then zeros, that counts what is read. Nothing is allocated up front. */
class VirtualSource implements ByteSource {
  readonly size: number;
  bytesRead = 0;
  private readonly parts: readonly (readonly [number, Uint8Array])[];
  constructor(size: number, parts: readonly (readonly [number, Uint8Array])[]) {
    this.size = size;
    this.parts = parts;
  }
  read(offset: number, length: number): Promise<Uint8Array> {
    const n = Math.max(0, Math.min(length, this.size - offset));
    this.bytesRead += n;
    const out = new Uint8Array(n);
    for (const [at, bytes] of this.parts) {
      const from = Math.max(at, offset);
      const to = Math.min(at + bytes.length, offset + n);
      if (from < to) out.set(bytes.subarray(from - at, to - at), from - offset);
    }
    return Promise.resolve(out);
  }
}

describe('bounded reads', () => {
  it('a safetensors file with a 6 GB data section is validated from its header alone', async () => {
    const data = 6 * 2 ** 30;
    const header = Buffer.from(
      JSON.stringify({ w: { dtype: 'F32', shape: [3 * 2 ** 29], data_offsets: [0, data] } }),
    );
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(header.length));
    const src = new VirtualSource(8 + header.length + data, [[0, Buffer.concat([len, header])]]);
    const r = await scanSource(src, 'big.safetensors');
    assert.equal(r.verdict, 'clean', JSON.stringify(r.findings));
    assert.ok(src.bytesRead < 1 << 20, `read ${src.bytesRead} bytes`);
  });

  it('a pickle with a 4 GB bytes payload is walked past it without reading it', async () => {
    const size = 4 * 2 ** 30;
    const head = Buffer.concat([Buffer.from('\x80\x04\x8e', 'latin1'), Buffer.alloc(8)]);
    head.writeBigUInt64LE(BigInt(size), 3);
    const tail = Buffer.from("0cos\nsystem\n(S'id'\ntR.", 'latin1');
    const src = new VirtualSource(11 + size + tail.length, [
      [0, head],
      [11 + size, tail],
    ]);
    const r = await scanSource(src, 'model.pkl');
    assert.equal(r.verdict, 'malicious');
    assert.ok(src.bytesRead < 64 << 20, `read ${src.bytesRead} bytes`);
  });

  it('scanFile walks a multi-chunk protocol-0 pickle the same as a buffer scan', async () => {
    const file = path.join(dir, 'big.pkl');
    python(
      `import pickle, os
class R:
    def __reduce__(self): return (os.system, ('id',))
with open(out, 'wb') as f:
    f.write(pickle.dumps(['s%09d' % i for i in range(400000)], protocol=0))
    f.write(pickle.dumps(R(), protocol=0))`,
      file,
    );
    const fromFile = await scanFile(file);
    const fromBuffer = await scanBuffer(readFileSync(file), 'big.pkl');
    assert.equal(fromFile.verdict, 'malicious');
    assert.deepEqual(fromFile, fromBuffer);
  });

  it('scanFile finds a payload that sits past 8 MiB, behind large binary frames, as a buffer scan does', async () => {
    // The file reader reuses one window buffer: what lies behind big skipped payloads must still be read right.
    const file = path.join(dir, 'frames.pkl');
    python(
      `import pickle, os
class R:
    def __reduce__(self): return (os.system, ('id',))
with open(out, 'wb') as f:
    f.write(pickle.dumps({'weights': bytes(9 * 1024 * 1024), 'bias': bytes(513), 'hook': R()}, protocol=4))`,
      file,
    );
    const fromFile = await scanFile(file);
    assert.equal(fromFile.verdict, 'malicious');
    assert.deepEqual(fromFile, await scanBuffer(readFileSync(file), 'frames.pkl'));
  });

  it('scanFile on a missing file is an error verdict, not a throw', async () => {
    const r = await scanFile(path.join(dir, 'nope.pkl'));
    assert.equal(r.verdict, 'error');
    assert.deepEqual(ruleIds(r), ['scan.error']);
  });
});

describe('fuzz: chunked walking equals whole walking', () => {
  /** The file driver's loop, with arbitrary chunk sizes. */
  function walkChunked(
    bytes: Uint8Array,
    sizes: readonly number[],
  ): { status: WalkStatus; reports: string[] } {
    const reports: string[] = [];
    const w = new PickleWalker(0, DEFAULT_LIMITS, {
      report: (rule, msg, at) => reports.push(`${rule}@${at}:${msg}`),
    });
    let i = 0;
    let extra = 0;
    for (;;) {
      const base = w.pos;
      const n = (sizes[i++ % sizes.length] ?? 1) + extra;
      const status = w.run(bytes.subarray(base, base + n), base, bytes.length);
      if (status.kind !== 'need') return { status, reports };
      extra = w.pos === base ? extra + n : 0;
    }
  }

  it('on real pickles of every protocol, split anywhere', async () => {
    const file = path.join(dir, 'seeds.bin');
    python(
      `import pickle, os, collections
class R:
    def __reduce__(self): return (os.system, ('id',))
obj = {'a': [1, 2.5, 'x' * 300, b'y' * 70000, None, True, (1, 2)], 'o': collections.OrderedDict(k=R()), 'l': 2**70}
with open(out, 'wb') as f:
    for p in range(6):
        d = pickle.dumps(obj, protocol=p)
        f.write(len(d).to_bytes(4, 'little') + d)`,
      file,
    );
    const all = readFileSync(file);
    const seeds: Buffer[] = [];
    for (let at = 0; at < all.length;) {
      const n = all.readUInt32LE(at);
      seeds.push(all.subarray(at + 4, at + 4 + n));
      at += 4 + n;
    }
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...seeds),
        fc.array(fc.integer({ min: 1, max: 200 }), { minLength: 1, maxLength: 8 }),
        (seed, sizes) => {
          const whole = walkChunked(seed, [seed.length]);
          const chunked = walkChunked(seed, sizes);
          assert.deepEqual(chunked, whole);
          assert.equal(whole.status.kind, 'stop');
          assert.ok(whole.reports.some((r) => r.includes('posix.system')));
          return Promise.resolve();
        },
      ),
      { numRuns: 150 },
    );
  });
});

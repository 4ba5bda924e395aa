import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { RULES, RULES_VERSION, scanBuffer, verdictOf } from '../../src/scanner/index.ts';
import type { ScanOptions } from '../../src/scanner/index.ts';
import type { Finding } from '../../src/scanner/types.ts';
import { python, ruleIds } from './helpers.ts';

let dir = '';
before(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'warden-scanner-rules-'));
});
after(() => {
  rmSync(dir, { recursive: true, force: true });
});

const b = (s: string): Buffer => Buffer.from(s, 'latin1');
const su = (s: string): Buffer => Buffer.concat([Buffer.from([0x8c, s.length]), b(s)]);
const bytes = (x: Buffer): Buffer => {
  const h = Buffer.alloc(5);
  h[0] = 0x42;
  h.writeUInt32LE(x.length, 1);
  return Buffer.concat([h, x]);
};
const evil = b("cos\nsystem\n(S'id'\ntR.");

function pyBytes(code: string): Buffer {
  const out = path.join(dir, `${Math.random().toString(36).slice(2)}.bin`);
  python(code, out);
  return readFileSync(out);
}

async function rulesOf(data: Uint8Array, options: ScanOptions = {}): Promise<string[]> {
  return ruleIds(await scanBuffer(data, undefined, options));
}

describe('rule catalogue', () => {
  it('has a version, and every rule a severity and description', () => {
    assert.match(RULES_VERSION, /\S/);
    for (const [id, r] of Object.entries(RULES)) {
      assert.match(id, /^[a-z0-9]+\.[a-z0-9-]+$/);
      assert.ok(r.description.length > 10, id);
    }
  });
  it('every rule is documented in docs/scanner.md', () => {
    const doc = readFileSync(path.join(import.meta.dirname, '..', '..', 'docs', 'scanner.md'), 'utf8');
    for (const id of Object.keys(RULES)) assert.ok(doc.includes(`\`${id}\``), id);
  });
  it('verdicts: critical is malicious, medium/high suspicious, a failed scan error, the rest clean', () => {
    const f = (severity: Finding['severity'], rule = 'x.y'): Finding => ({
      severity,
      rule,
      message: '',
      path: '',
    });
    assert.equal(verdictOf([f('info'), f('low')]), 'clean');
    assert.equal(verdictOf([f('medium')]), 'suspicious');
    assert.equal(verdictOf([f('high')]), 'suspicious');
    assert.equal(verdictOf([f('high', 'scan.error')]), 'error');
    assert.equal(verdictOf([f('high', 'scan.error'), f('critical')]), 'malicious');
  });
});

describe('less common rules', () => {
  it('pickle.nested-loader: torch.storage._load_from_bytes payloads are scanned', async () => {
    const p = Buffer.concat([
      b('\x80\x04'),
      su('torch.storage'),
      su('_load_from_bytes'),
      b('\x93'),
      bytes(evil),
      b('\x85R.'),
    ]);
    const r = await scanBuffer(p);
    assert.equal(r.verdict, 'malicious');
    assert.ok(ruleIds(r).includes('pickle.nested-loader'));
  });
  it('pickle.nested-unscanned: a loader fed computed bytes', async () => {
    const p = Buffer.concat([
      b('\x80\x04'),
      su('pickle'),
      su('loads'),
      b('\x93'),
      su('builtins'),
      su('bytes'),
      b('\x93)R\x85R.'),
    ]);
    assert.ok((await rulesOf(p)).includes('pickle.nested-unscanned'));
  });
  it('a memoised payload fed to a loader many times is scanned once', async () => {
    const call = b('h\x00h\x01\x85R0');
    const p = Buffer.concat([
      b('\x80\x04'),
      su('pickle'),
      su('loads'),
      b('\x93\x94'),
      bytes(evil),
      b('\x94\x85R0'),
      ...Array.from({ length: 200 }, () => call),
      b('N.'),
    ]);
    const r = await scanBuffer(p);
    assert.ok(!ruleIds(r).includes('pickle.nested-unscanned'));
    assert.equal(new Set(r.findings.filter((f) => f.path.startsWith('<')).map((f) => f.path)).size, 1);
  });
  it('pickle.out-of-band-buffer', async () => {
    assert.deepEqual(await rulesOf(b('\x80\x05\x97.')), ['pickle.out-of-band-buffer']);
  });
  it('joblib.unparsed-array: a wrapper without a usable dtype stops the walk', async () => {
    const p = Buffer.concat([
      b('\x80\x04'),
      su('joblib.numpy_pickle'),
      su('NumpyArrayWrapper'),
      b('\x93)\x81}'),
      su('shape'),
      b('K\x01\x85sb.'),
    ]);
    assert.deepEqual(await rulesOf(p), ['joblib.unparsed-array']);
  });
  it('torch.bad-persistent-id', async () => {
    const zip = pyBytes(`import zipfile
with zipfile.ZipFile(out, 'w') as z:
    z.writestr('archive/data.pkl', b'\\x80\\x02X\\x04\\x00\\x00\\x00evilQ.')
    z.writestr('archive/version', b'3')`);
    assert.ok((await rulesOf(zip)).includes('torch.bad-persistent-id'));
  });
  it('npy.size-mismatch', async () => {
    const header = "{'descr': '<f8', 'fortran_order': False, 'shape': (4,), }".padEnd(117) + '\n';
    const npy = Buffer.concat([b('\x93NUMPY\x01\x00'), Buffer.from([118, 0]), b(header), Buffer.alloc(8)]);
    assert.deepEqual(await rulesOf(npy), ['npy.size-mismatch']);
  });
  it('keras.malformed: metadata.json without keras_version', async () => {
    const zip = pyBytes(`import zipfile
with zipfile.ZipFile(out, 'w') as z:
    z.writestr('config.json', '{"module": "keras", "class_name": "Sequential", "config": {}, "registered_name": null}')
    z.writestr('metadata.json', '{}')`);
    assert.deepEqual(await rulesOf(zip), ['keras.malformed']);
  });
  it('gguf.legacy-version', async () => {
    const v1 = Buffer.concat([b('GGUF'), Buffer.from([1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])]);
    assert.deepEqual(await rulesOf(v1), ['gguf.legacy-version']);
  });
  it('archive.entry-limit', async () => {
    const zip = pyBytes(`import zipfile
with zipfile.ZipFile(out, 'w') as z:
    for i in range(5): z.writestr(f'{i}.txt', 'x')`);
    assert.ok((await rulesOf(zip, { limits: { maxArchiveEntries: 2 } })).includes('archive.entry-limit'));
  });
  it('zip.unsupported-method (bzip2 entries)', async () => {
    const zip = pyBytes(`import zipfile
with zipfile.ZipFile(out, 'w', zipfile.ZIP_BZIP2) as z:
    z.writestr('a.pkl', b'x' * 100)`);
    assert.deepEqual(await rulesOf(zip), ['zip.unsupported-method']);
  });
  it('zip.malformed: no end of central directory, local headers still walked', async () => {
    const zip = pyBytes(`import zipfile, io
buf = io.BytesIO()
with zipfile.ZipFile(buf, 'w') as z:
    z.writestr('evil.pkl', ${JSON.stringify(evil.toString('latin1'))}.encode('latin1'))
open(out, 'wb').write(buf.getvalue()[:-22])`);
    const r = await scanBuffer(zip);
    assert.equal(r.verdict, 'malicious');
    assert.ok(ruleIds(r).includes('zip.malformed'));
  });
  it('tar.malformed', async () => {
    const block = Buffer.alloc(1024);
    block.write('x.pkl', 0);
    block.write('0000000', 148);
    block.write('ustar', 257);
    assert.deepEqual(await rulesOf(block), ['tar.malformed']);
  });
  it('compression.unsupported and compression.malformed', async () => {
    const bz = pyBytes(`import bz2, pickle\nopen(out, 'wb').write(bz2.compress(b'x' * 100))`);
    assert.deepEqual(await rulesOf(bz), ['compression.unsupported']);
    assert.deepEqual(await rulesOf(b('\x1f\x8b\x08\x00garbage-not-deflate')), ['compression.malformed']);
  });
  it('safetensors.unknown-field', async () => {
    const h = b('{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"extra":1}}');
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(h.length));
    assert.deepEqual(await rulesOf(Buffer.concat([len, h, Buffer.alloc(1)])), ['safetensors.unknown-field']);
  });
});

// Cross-checks the envelope format against docs/spec/envelope.md: files written by Warden's own API are
// decrypted by test/envelope/independent_decrypt.py, a Python decryptor written from the spec alone.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { encryptFile, encryptStream } from '../../src/envelope/index.ts';
import { LocalKeyring } from '../../src/keyring/index.ts';
import { collect, fromBuffer, tempDir } from './support.ts';

const SCRIPT = path.join(path.dirname(fileURLToPath(import.meta.url)), 'independent_decrypt.py');
// The Debian interpreter that has python3-cryptography (pyenv may shadow python3 on PATH).
const PYTHON = process.env.WARDEN_TEST_PYTHON ?? '/usr/bin/python3';

// Exit codes of independent_decrypt.py.
const OK = 0;
const MALFORMED = 2;
const DECRYPTION_FAILED = 3;
const NO_KEY = 4;
const CONTEXT_MISMATCH = 5;

// Fail loudly (never skip) when the interpreter cannot run the decryptor.
const probe = spawnSync(PYTHON, ['-c', 'import cryptography; print(cryptography.__version__)'], {
  encoding: 'utf8',
});
if (probe.status !== 0) {
  throw new Error(
    `${PYTHON} cannot import the "cryptography" package (install python3-cryptography): ` +
      (probe.error?.message ?? probe.stderr),
  );
}

const dir = tempDir('warden-independent-');
const keyringPath = path.join(dir, 'keyring.json');
const { keyring } = await LocalKeyring.open(keyringPath, { create: true });
const otherKeyringPath = path.join(dir, 'other-keyring.json');
await LocalKeyring.open(otherKeyringPath, { create: true });

const CONTEXT = { alpha: '1', beta: 'two', clé: 'välue ✓ 鍵', 'z-emoji': '🔐' };

let counter = 0;
const fresh = (name: string) => path.join(dir, `${String(counter++)}-${name}`);

interface Result {
  status: number | null;
  stdout: Buffer;
  stderr: string;
}

function pyDecrypt(
  input: string,
  output: string,
  opts: { keyring?: string; expect?: string[]; stdin?: Uint8Array } = {},
): Promise<Result> {
  const args = [SCRIPT, '--keyring', opts.keyring ?? keyringPath];
  for (const e of opts.expect ?? []) args.push('--expect-context', e);
  args.push(input, output);
  return new Promise((resolve, reject) => {
    const child = spawn(PYTHON, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    // The decryptor may exit before reading all of a damaged stdin.
    child.stdin.on('error', () => undefined);
    child.on('error', reject);
    child.on('close', (status) => {
      resolve({ status, stdout: Buffer.concat(out), stderr: Buffer.concat(err).toString('utf8') });
    });
    child.stdin.end(opts.stdin);
  });
}

/** Decrypts with Python and asserts the exit code; on failure, asserts one stderr line and no output. */
async function expectStatus(
  ciphertext: Uint8Array,
  status: number,
  label: string,
  opts: { keyring?: string } = {},
) {
  const input = fresh('damaged.wenc');
  const output = fresh('out.bin');
  writeFileSync(input, ciphertext);
  const r = await pyDecrypt(input, output, opts);
  assert.equal(r.status, status, `${label}: exit ${String(r.status)}, stderr: ${r.stderr}`);
  if (status !== OK) {
    assert.match(r.stderr, /^independent_decrypt: [^\n]+\n$/, `${label}: one-line message`);
    assert.equal(existsSync(output), false, `${label}: no plaintext written`);
  }
  return r;
}

/** Encrypts with encryptFile (declared length) or encryptStream (no declared length). */
async function seal(msg: Buffer, chunkExponent: number, declared: boolean): Promise<Buffer> {
  if (declared) {
    const input = fresh('plain.bin');
    const output = fresh('sealed.wenc');
    writeFileSync(input, msg);
    await encryptFile(input, output, { recipients: [keyring], context: CONTEXT, chunkExponent });
    return readFileSync(output);
  }
  return collect(
    encryptStream(fromBuffer(msg, 50000), { recipients: [keyring], context: CONTEXT, chunkExponent }),
  );
}

/** Byte offsets of the fields of a well-formed envelope (parsed here only to aim the corruptions). */
function layout(ct: Buffer) {
  const headerLength = ct.readUInt32BE(4);
  let p = 8 + 4 + 8;
  const contextCount = ct.readUInt16BE(p);
  p += 2;
  for (let i = 0; i < contextCount; i++) {
    p += 2 + ct.readUInt16BE(p);
    p += 2 + ct.readUInt16BE(p);
  }
  const slots = p;
  const firstRef = slots + 1 + 1 + 2;
  const refLength = ct.readUInt16BE(slots + 2);
  const firstWrapped = firstRef + refLength + 2;
  return {
    headerLength,
    flags: 11,
    plaintextLength: 12,
    firstContextKey: 8 + 14 + 2,
    slots,
    firstRef,
    firstWrapped,
    mac: headerLength - 32,
    salt: headerLength,
    commitment: headerLength + 24,
    chunks: headerLength + 56,
  };
}

function flip(ct: Buffer, offset: number, mask = 0x01): Buffer {
  const copy = Buffer.from(ct);
  copy[offset]! ^= mask;
  return copy;
}

function patch(ct: Buffer, offset: number, bytes: number[]): Buffer {
  const copy = Buffer.from(ct);
  Buffer.from(bytes).copy(copy, offset);
  return copy;
}

// A three-chunk message (two full chunks and a 100-byte final one) for the negative cases.
const C = 2 ** 14;
const declared = await seal(randomBytes(2 * C + 100), 14, true);
const streamed = await seal(randomBytes(2 * C + 100), 14, false);
const at = layout(declared);
const atStreamed = layout(streamed);
const last = declared.length - 1;

describe('independent Python decryptor (docs/spec/envelope.md)', () => {
  for (const chunkExponent of [14, 20]) {
    const size = 2 ** chunkExponent;
    const several = chunkExponent === 14 ? 3 * size + 7 : 2 * size + 3;
    for (const declared of [true, false]) {
      it(`decrypts e=${String(chunkExponent)} ${declared ? 'with' : 'without'} a declared length`, async () => {
        for (const n of [0, 1, size - 1, size, size + 1, several]) {
          const msg = randomBytes(n);
          const ct = await seal(msg, chunkExponent, declared);
          // The flag says whether the length was declared.
          assert.equal(ct[11], declared ? 0x01 : 0x00, `flags for n=${String(n)}`);
          const input = fresh('ok.wenc');
          const output = fresh('ok.bin');
          writeFileSync(input, ct);
          const r = await pyDecrypt(input, output, { expect: ['alpha=1', 'clé=välue ✓ 鍵', 'z-emoji=🔐'] });
          assert.equal(r.status, OK, `n=${String(n)}: ${r.stderr}`);
          assert.equal(r.stderr, '');
          assert.ok(readFileSync(output).equals(msg), `n=${String(n)}: plaintext differs`);
        }
      });
    }
  }

  it('writes to stdout with "-"', async () => {
    const msg = randomBytes(40000);
    const input = fresh('stdout.wenc');
    writeFileSync(input, await seal(msg, 14, true));
    const r = await pyDecrypt(input, '-');
    assert.equal(r.status, OK, r.stderr);
    assert.ok(r.stdout.equals(msg));
  });

  it('streams from stdin, where the final-chunk rule needs look-ahead', async () => {
    const msg = randomBytes(2 * C);
    const ct = await seal(msg, 14, false);
    const good = await pyDecrypt('-', '-', { stdin: ct });
    assert.equal(good.status, OK, good.stderr);
    assert.ok(good.stdout.equals(msg));
    const cases: [string, Buffer, number][] = [
      // Dropping the empty final chunk leaves the stream ending on a full-size chunk.
      ['final chunk dropped', ct.subarray(0, ct.length - 16), MALFORMED],
      ['final chunk cut short', ct.subarray(0, ct.length - 1), MALFORMED],
      ['trailing byte', Buffer.concat([ct, Buffer.from([0])]), DECRYPTION_FAILED],
      ['declared length, one byte short', declared.subarray(0, last), DECRYPTION_FAILED],
    ];
    await Promise.all(
      cases.map(async ([label, input, status]) => {
        const r = await pyDecrypt('-', '-', { stdin: input });
        assert.equal(r.status, status, `${label}: ${r.stderr}`);
        assert.equal(r.stdout.length, 0, `${label}: no plaintext released`);
      }),
    );
  });

  it('checks expected context entries exactly (no normalisation)', async () => {
    const input = fresh('ctx.wenc');
    writeFileSync(input, await seal(randomBytes(100), 14, true));
    const cases: [string[], number][] = [
      [['beta=two', 'clé=välue ✓ 鍵'], OK],
      [['beta=three'], CONTEXT_MISMATCH],
      [['missing=1'], CONTEXT_MISMATCH],
      // "é" decomposed (e + U+0301) is a different key: decoders must not normalise.
      [['cle\u0301=välue ✓ 鍵'], CONTEXT_MISMATCH],
    ];
    await Promise.all(
      cases.map(async ([expect, status]) => {
        const output = fresh('ctx.bin');
        const r = await pyDecrypt(input, output, { expect });
        assert.equal(r.status, status, `${expect.join(',')}: ${r.stderr}`);
        assert.equal(existsSync(output), status === OK);
      }),
    );
  });

  describe('rejects damaged envelopes', () => {
    it('reports a flipped byte anywhere authenticated as "decryption failed"', async () => {
      const cases: [string, Buffer][] = [
        ['header: chunk_exponent', flip(declared, 10, 0x01)],
        ['header: plaintext_length', flip(declared, at.plaintextLength + 7)],
        ['header: context value', flip(declared, at.slots - 1)],
        ['slot: wrap nonce', flip(declared, at.firstWrapped)],
        ['slot: wrapped key', flip(declared, at.firstWrapped + 20)],
        ['slot: wrap tag', flip(declared, at.firstWrapped + 59)],
        ['header MAC', flip(declared, at.mac + 5)],
        ['salt', flip(declared, at.salt + 3)],
        ['commitment', flip(declared, at.commitment + 31)],
        ['first chunk ciphertext', flip(declared, at.chunks)],
        ['first chunk tag', flip(declared, at.chunks + C + 15)],
        ['middle chunk ciphertext', flip(declared, at.chunks + C + 16 + 500)],
        ['final chunk ciphertext', flip(declared, last - 20)],
        ['final chunk tag', flip(declared, last)],
        ['final chunk tag (no declared length)', flip(streamed, streamed.length - 1)],
        ['swapped chunks', swapChunks(declared, at.chunks, C + 16)],
      ];
      await Promise.all(cases.map(([label, ct]) => expectStatus(ct, DECRYPTION_FAILED, label)));
    });

    it('rejects headers that break a parsing rule as malformed', async () => {
      const wrongLength = Buffer.from(declared);
      wrongLength.writeUInt32BE(at.headerLength + 1, 4);
      const cases: [string, Buffer][] = [
        ['magic', flip(declared, 0)],
        ['header_length too small', patch(declared, 4, [0, 0, 0, 61])],
        ['header_length too large', patch(declared, 4, [0, 0x10, 0, 1])],
        ['header_length off by one', wrongLength],
        ['version', flip(declared, 8, 0x02)],
        ['suite', flip(declared, 9, 0x02)],
        ['chunk_exponent 13', patch(declared, 10, [13])],
        ['chunk_exponent 25', patch(declared, 10, [25])],
        ['reserved flag bit', flip(declared, at.flags, 0x80)],
        ['length without its flag', patch(declared, at.flags, [0])],
        ['plaintext_length above 2^52', patch(declared, at.plaintextLength, [0, 0x20])],
        ['context keys out of order', patch(declared, at.firstContextKey, [0x7a])],
        ['context key invalid UTF-8', patch(declared, at.firstContextKey, [0xc0])],
        ['context_count too large', patch(declared, 20, [0, 65])],
        ['slot_count 0', patch(declared, at.slots, [0])],
        ['slot type 3', patch(declared, at.slots + 1, [3])],
        ['slot ref invalid UTF-8 (surrogate)', patch(declared, at.firstRef, [0xed, 0xa0, 0x80])],
      ];
      await Promise.all(cases.map(([label, ct]) => expectStatus(ct, MALFORMED, label)));
    });

    it('reports truncation and trailing bytes', async () => {
      const cases: [string, Buffer, number][] = [
        ['empty file', declared.subarray(0, 0), MALFORMED],
        ['inside the magic', declared.subarray(0, 3), MALFORMED],
        ['inside the header', declared.subarray(0, at.headerLength - 1), MALFORMED],
        ['header only', declared.subarray(0, at.headerLength), MALFORMED],
        ['inside salt || commitment', declared.subarray(0, at.chunks - 1), MALFORMED],
        ['no chunks', declared.subarray(0, at.chunks), MALFORMED],
        ['one byte short', declared.subarray(0, last), MALFORMED],
        ['final chunk dropped', declared.subarray(0, at.chunks + 2 * (C + 16)), MALFORMED],
        ['trailing byte', Buffer.concat([declared, Buffer.from([0])]), MALFORMED],
        // Without a declared length only the final chunk's tag authenticates the length.
        ['one byte short, no declared length', streamed.subarray(0, streamed.length - 1), DECRYPTION_FAILED],
        ['trailing byte, no declared length', Buffer.concat([streamed, Buffer.from([0])]), DECRYPTION_FAILED],
        [
          'final chunk dropped, no declared length',
          streamed.subarray(0, atStreamed.chunks + 2 * (C + 16)),
          MALFORMED,
        ],
        [
          'final and one full chunk dropped, no declared length',
          streamed.subarray(0, atStreamed.chunks + C + 16),
          MALFORMED,
        ],
      ];
      await Promise.all(cases.map(([label, ct, status]) => expectStatus(ct, status, label)));
    });

    it('reports "no key" for a keyring that holds no slot key, or a renamed slot', async () => {
      const r = await expectStatus(declared, NO_KEY, 'other keyring', { keyring: otherKeyringPath });
      assert.match(r.stderr, /no key for any slot/);
      assert.match(r.stderr, /dev-/);
      await expectStatus(flip(declared, at.firstRef + 5), NO_KEY, 'flipped ref');
    });
  });
});

function swapChunks(ct: Buffer, start: number, size: number): Buffer {
  const copy = Buffer.from(ct);
  ct.copy(copy, start, start + size, start + 2 * size);
  ct.copy(copy, start + size, start, start + size);
  return copy;
}

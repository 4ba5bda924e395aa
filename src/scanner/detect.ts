import { DEFAULT_LIMITS } from './rules.ts';
import { PickleWalker } from './pickle/walker.ts';
import type { FormatName } from './types.ts';

/** Bytes of the head that `detectFormat` looks at. */
export const HEAD_BYTES = 64 * 1024;

/**
 * PyTorch legacy files start with a pickle of the magic number 0x1950a86a20f9469cfc6c: LONG1 of 10 bytes,
 * right after PROTO 2 by default, or after PROTO and FRAME when saved with pickle_protocol 4 or 5.
 */
const TORCH_LEGACY_MAGIC = Uint8Array.from([
  0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19,
]);
const HDF5 = Uint8Array.from([0x89, 0x48, 0x44, 0x46, 0x0d, 0x0a, 0x1a, 0x0a]);

function startsWith(b: Uint8Array, sig: ArrayLike<number>, at = 0): boolean {
  if (b.length < at + sig.length) return false;
  for (let i = 0; i < sig.length; i++) if (b[at + i] !== sig[i]) return false;
  return true;
}

function ascii(s: string): Uint8Array {
  return Buffer.from(s, 'latin1');
}

/** A tar header block: checksum over the block with the checksum field read as spaces. */
export function tarChecksumOk(block: Uint8Array): boolean {
  if (block.length < 512) return false;
  const field = String.fromCharCode(...block.subarray(148, 156))
    .replace(/[\0 ]+$/g, '')
    .trim();
  if (!/^[0-7]+$/.test(field)) return false;
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 0x20 : (block[i] ?? 0);
  return sum === parseInt(field, 8);
}

/** ModelProto fields and their wire types, for recognising an ONNX file that has no magic number. */
const ONNX_FIELDS: ReadonlyMap<number, number> = new Map([
  [1, 0],
  [2, 2],
  [3, 2],
  [4, 2],
  [5, 0],
  [6, 2],
  [7, 2],
  [8, 2],
  [14, 2],
  [20, 2],
  [25, 2],
]);

function readVarint(b: Uint8Array, pos: number): [number, number] | null {
  let v = 0;
  let mul = 1;
  for (let i = 0; i < 10 && pos + i < b.length; i++) {
    const x = b[pos + i] ?? 0;
    v += (x & 0x7f) * mul;
    mul *= 128;
    if ((x & 0x80) === 0) return [v, pos + i + 1];
  }
  return null;
}

/** Protobuf-serialised ModelProto: ir_version comes first (fields are written in number order). */
function looksLikeOnnx(head: Uint8Array, size: number): boolean {
  if (head[0] !== 0x08) return false;
  const ir = readVarint(head, 1);
  if (ir === null || ir[0] < 1 || ir[0] > 20) return false;
  let pos = ir[1];
  let fields = 1;
  while (pos < head.length) {
    const tag = readVarint(head, pos);
    if (tag === null) break;
    const field = Math.floor(tag[0] / 8);
    const wt = tag[0] % 8;
    if (ONNX_FIELDS.get(field) !== wt) return false;
    const val = readVarint(head, tag[1]);
    if (val === null) break;
    pos = wt === 2 ? val[1] + val[0] : val[1];
    fields++;
    // A field running past the end is a truncated model: still ONNX, and the scanner will say so.
    if (pos > size) break;
  }
  return fields >= 2;
}

/**
 * Protocol 0/1 pickles have no header: bytes count as a pickle when a dry walk of the head reaches STOP or
 * runs out of head without error, or imports a well-formed global before failing (CPython runs everything
 * before the failure, so a payload followed by garbage is still a pickle).
 */
function looksLikePickle(head: Uint8Array, size: number): boolean {
  const walker = new PickleWalker(0, DEFAULT_LIMITS, { report: () => undefined });
  const status = walker.run(head, 0, size);
  return status.kind === 'stop' || status.kind === 'need' || walker.wellFormedImports > 0;
}

/** Recognises the content type from the first bytes (up to `HEAD_BYTES`), never from a file name. */
export function detectFormat(head: Uint8Array, size: number): FormatName {
  if (startsWith(head, ascii('PK\x03\x04')) || startsWith(head, ascii('PK\x05\x06'))) return 'zip';
  if (startsWith(head, ascii('\x93NUMPY'))) return 'npy';
  if (startsWith(head, ascii('GGUF'))) return 'gguf';
  if (startsWith(head, [0x1f, 0x8b])) return 'gzip';
  if ([0, 512, 1024, 2048].some((at) => startsWith(head, HDF5, at))) return 'hdf5';
  if (startsWith(head, ascii('BZh')) && startsWith(head, [0x31, 0x41, 0x59, 0x26, 0x53, 0x59], 4))
    return 'bzip2';
  if (startsWith(head, [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00])) return 'xz';
  if (startsWith(head, [0x04, 0x22, 0x4d, 0x18])) return 'lz4';
  if (startsWith(head, [0x28, 0xb5, 0x2f, 0xfd])) return 'zstd';
  if (head.length >= 10 && head[8] === 0x7b) {
    // u64 little-endian header length, then the JSON header's '{'. Text that happens to have '{' at byte 8
    // has non-zero high length bytes; a real header is below 1 TB, or its JSON goes on with '"' or '}'.
    const highZero = head[5] === 0 && head[6] === 0 && head[7] === 0;
    if (highZero || head[9] === 0x22 || head[9] === 0x7d) return 'safetensors';
  }
  if (head[0] === 0x80 && (head[1] ?? 0xff) <= 5) {
    if ([2, 11].some((at) => startsWith(head, TORCH_LEGACY_MAGIC, at))) return 'pytorch-legacy';
    return Buffer.from(head.buffer, head.byteOffset, head.byteLength).includes('NumpyArrayWrapper')
      ? 'joblib'
      : 'pickle';
  }
  if (head.length >= 2 && head[0] === 0x78 && ((head[0] << 8) | (head[1] ?? 0)) % 31 === 0) return 'zlib';
  if (startsWith(head, ascii('ustar'), 257) || tarChecksumOk(head.subarray(0, 512))) return 'tar';
  if (looksLikeOnnx(head, size)) return 'onnx';
  if (head.length > 0 && looksLikePickle(head, size)) return 'pickle';
  return 'unknown';
}

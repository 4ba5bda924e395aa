import { crc32, inflateRawSync, zstdDecompressSync } from 'node:zlib';
import type { ScanContext } from '../context.ts';
import type { PV } from '../pickle/walker.ts';
import { BufferSource, Cursor, sliceSource, TruncatedError, type ByteSource } from '../source.ts';
import type { FormatName } from '../types.ts';
import { checkEntryPath } from './archive.ts';
import { scanKerasConfig, scanKerasMetadata } from './keras.ts';
import { walkPickleStream } from './pickle.ts';

/*
 * Zip reader written by hand: library readers (node has none built in, and the npm ones) present one
 * consistent view and hide exactly what a scanner must see: both the local headers and the central
 * directory, disagreements between them, entries reachable from one but not the other, overlapping data and
 * flag bits. Entries are read as windows onto the source (stored) or inflated with node:zlib under a cap.
 */

const SIG_LOCAL = 0x04034b50;
const SIG_CENTRAL = 0x02014b50;
const SIG_EOCD = 0x06054b50;
const SIG_EOCD64 = 0x06064b50;
const SIG_EOCD64_LOCATOR = 0x07064b50;
const SIG_DESCRIPTOR = 0x08074b50;

const FLAG_ENCRYPTED = 0x0001;
const FLAG_DESCRIPTOR = 0x0008;
const FLAG_STRONG_ENCRYPTION = 0x0040;
const FLAG_UTF8 = 0x0800;

const METHOD_STORED = 0;
const METHOD_DEFLATE = 8;
const METHOD_ZSTD = 93;

interface Entry {
  name: string;
  nameBytes: Uint8Array;
  flags: number;
  method: number;
  crc: number;
  csize: number;
  usize: number;
  /** Offset of the local header, already shifted by any prepended data. */
  local: number;
  /** Offset of the entry's data (from the local header's own name/extra lengths). */
  data: number;
  /** End of data plus data descriptor. */
  end: number;
  symlink: boolean;
  /** Found by local header only (not in the central directory). */
  hidden: boolean;
}

interface Eocd {
  pos: number;
  entries: number;
  cdSize: number;
  cdOffset: number;
  /** Where the (zip64) end record that holds cdSize/cdOffset sits, for the prepended-data computation. */
  recordPos: number;
  strict: boolean;
}

function u16(b: Uint8Array, at: number): number {
  return (b[at] ?? 0) | ((b[at + 1] ?? 0) << 8);
}

function u32(b: Uint8Array, at: number): number {
  return (u16(b, at) | (u16(b, at + 2) << 16)) >>> 0;
}

function u64(b: Uint8Array, at: number): number {
  return u32(b, at) + u32(b, at + 4) * 2 ** 32;
}

function decodeName(bytes: Uint8Array, flags: number): string {
  // Without the UTF-8 flag names are CP437; latin1 keeps them one byte per character, which is what the
  // path checks need (every separator and dot is ASCII in both).
  return Buffer.from(bytes).toString(flags & FLAG_UTF8 ? 'utf8' : 'latin1');
}

/** The end of central directory record (and its zip64 form), the way Python's zipfile finds it. */
export async function findEocd(src: ByteSource): Promise<Eocd | null> {
  if (src.size < 22) return null;
  const tailLen = Math.min(src.size, 22 + 65535 + 20 + 56);
  const tailStart = src.size - tailLen;
  const tail = await src.read(tailStart, tailLen);
  let found = -1;
  let strict = false;
  for (let i = tail.length - 22; i >= 0; i--) {
    if (u32(tail, i) !== SIG_EOCD) continue;
    if (found < 0) found = i;
    if (i + 22 + u16(tail, i + 20) === tail.length) {
      found = i;
      strict = true;
      break;
    }
  }
  if (found < 0) return null;
  const eocd: Eocd = {
    pos: tailStart + found,
    entries: u16(tail, found + 10),
    cdSize: u32(tail, found + 12),
    cdOffset: u32(tail, found + 16),
    recordPos: tailStart + found,
    strict,
  };
  const loc = found - 20;
  if (loc >= 0 && u32(tail, loc) === SIG_EOCD64_LOCATOR) {
    const rec64 = u64(tail, loc + 8);
    const r = await src.read(rec64, 56);
    if (r.length === 56 && u32(r, 0) === SIG_EOCD64) {
      eocd.entries = u64(r, 32);
      eocd.cdSize = u64(r, 40);
      eocd.cdOffset = u64(r, 48);
      eocd.recordPos = rec64;
    }
  }
  return eocd;
}

/** True when the source ends in a zip end record that points at a central directory (zip found at the tail). */
export async function hasZipAtTail(src: ByteSource): Promise<boolean> {
  const eocd = await findEocd(src);
  if (eocd === null || !eocd.strict) return false;
  const cdStart = eocd.recordPos - eocd.cdSize;
  if (cdStart < 0) return false;
  if (eocd.entries === 0) return eocd.cdSize === 0;
  const sig = await src.read(cdStart, 4);
  return sig.length === 4 && u32(sig, 0) === SIG_CENTRAL;
}

/** Applies the zip64 extended-information extra field to sizes/offset saturated at 0xFFFFFFFF. */
function zip64Extra(extra: Uint8Array, vals: { usize: number; csize: number; local: number }): void {
  for (let p = 0; p + 4 <= extra.length;) {
    const id = u16(extra, p);
    const len = u16(extra, p + 2);
    if (id === 0x0001) {
      let q = p + 4;
      const take = (): number | undefined => {
        if (q + 8 > p + 4 + len) return undefined;
        const v = u64(extra, q);
        q += 8;
        return v;
      };
      if (vals.usize === 0xffffffff) vals.usize = take() ?? vals.usize;
      if (vals.csize === 0xffffffff) vals.csize = take() ?? vals.csize;
      if (vals.local === 0xffffffff) vals.local = take() ?? vals.local;
      return;
    }
    p += 4 + len;
  }
}

interface LocalHeader {
  flags: number;
  method: number;
  crc: number;
  csize: number;
  usize: number;
  nameBytes: Uint8Array;
  data: number;
}

async function readLocal(src: ByteSource, at: number): Promise<LocalHeader | null> {
  const h = await src.read(at, 30);
  if (h.length < 30 || u32(h, 0) !== SIG_LOCAL) return null;
  const nameLen = u16(h, 26);
  const extraLen = u16(h, 28);
  const ne = await src.read(at + 30, nameLen + extraLen);
  if (ne.length < nameLen + extraLen) return null;
  const vals = { usize: u32(h, 22), csize: u32(h, 18), local: 0 };
  zip64Extra(ne.subarray(nameLen), vals);
  return {
    flags: u16(h, 6),
    method: u16(h, 8),
    crc: u32(h, 14),
    csize: vals.csize,
    usize: vals.usize,
    nameBytes: ne.slice(0, nameLen),
    data: at + 30 + nameLen + extraLen,
  };
}

/** Length of the data descriptor after an entry's data (0 when absent or unreadable), checked against the CD. */
async function descriptor(src: ByteSource, ctx: ScanContext, e: Entry): Promise<number> {
  const at = e.data + e.csize;
  const d = await src.read(at, 24);
  let p = d.length >= 4 && u32(d, 0) === SIG_DESCRIPTOR ? 4 : 0;
  if (d.length < p + 12) return 0;
  const crc = u32(d, p);
  const zip64 = e.csize >= 0xffffffff || e.usize >= 0xffffffff;
  const csize = zip64 ? u64(d, p + 4) : u32(d, p + 4);
  const usize = zip64 ? u64(d, p + 12) : u32(d, p + 8);
  p += zip64 ? 20 : 12;
  if (crc !== e.crc || csize !== e.csize || usize !== e.usize) {
    ctx.add('zip.header-mismatch', `${e.name}: data descriptor disagrees with the central directory`, at);
  }
  return p;
}

async function readCentral(src: ByteSource, ctx: ScanContext, eocd: Eocd, shift: number): Promise<Entry[]> {
  const entries: Entry[] = [];
  const cur = new Cursor(src, eocd.cdOffset + shift);
  const cdEnd = eocd.cdOffset + shift + eocd.cdSize;
  try {
    while (cur.pos + 46 <= cdEnd) {
      if (entries.length >= ctx.limits.maxArchiveEntries) {
        ctx.add('archive.entry-limit', `more than ${ctx.limits.maxArchiveEntries} entries`);
        break;
      }
      const h = await cur.bytes(46);
      if (u32(h, 0) !== SIG_CENTRAL) {
        ctx.add('zip.malformed', 'bad central directory signature', cur.pos - 46);
        break;
      }
      const madeBy = u16(h, 4);
      const flags = u16(h, 8);
      const method = u16(h, 10);
      const crc = u32(h, 16);
      const nameLen = u16(h, 28);
      const extraLen = u16(h, 30);
      const commentLen = u16(h, 32);
      const extAttr = u32(h, 38);
      const vals = { csize: u32(h, 20), usize: u32(h, 24), local: u32(h, 42) };
      const nameBytes = (await cur.bytes(nameLen)).slice();
      zip64Extra(await cur.bytes(extraLen), vals);
      cur.skip(commentLen);
      const unixMode = (extAttr >>> 16) & 0o170000;
      entries.push({
        name: decodeName(nameBytes, flags),
        nameBytes,
        flags,
        method,
        crc,
        csize: vals.csize,
        usize: vals.usize,
        local: vals.local + shift,
        data: -1,
        end: -1,
        symlink: madeBy >> 8 === 3 && unixMode === 0o120000,
        hidden: false,
      });
    }
  } catch (e) {
    if (!(e instanceof TruncatedError)) throw e;
    ctx.add('zip.malformed', 'central directory truncated', e.offset);
  }
  if (entries.length !== eocd.entries) {
    ctx.add(
      'zip.malformed',
      `end record announces ${eocd.entries} entries, central directory has ${entries.length}`,
    );
  }
  return entries;
}

/** Compares each central directory record with its local header, and fills in where the data lies. */
async function checkLocals(
  src: ByteSource,
  parent: ScanContext,
  entries: Entry[],
  cdStart: number,
): Promise<Entry[]> {
  const ok: Entry[] = [];
  for (const e of entries) {
    const ctx = parent.child(e.name);
    const l = await readLocal(src, e.local);
    if (l === null) {
      ctx.add(
        'zip.header-mismatch',
        `${e.name}: no local file header where the central directory points`,
        e.local,
      );
      continue;
    }
    if (Buffer.compare(l.nameBytes, e.nameBytes) !== 0) {
      ctx.add(
        'zip.header-mismatch',
        `central directory name ${JSON.stringify(e.name)} but local header name ${JSON.stringify(decodeName(l.nameBytes, l.flags))}`,
        e.local,
      );
      checkEntryPath(ctx, decodeName(l.nameBytes, l.flags));
    }
    const localEnc = (l.flags & (FLAG_ENCRYPTED | FLAG_STRONG_ENCRYPTION)) !== 0;
    const cdEnc = (e.flags & (FLAG_ENCRYPTED | FLAG_STRONG_ENCRYPTION)) !== 0;
    if (
      localEnc !== cdEnc ||
      l.method !== e.method ||
      (l.flags & FLAG_DESCRIPTOR) !== (e.flags & FLAG_DESCRIPTOR)
    ) {
      ctx.add(
        'zip.header-mismatch',
        `${e.name}: method or flags differ between local header and central directory`,
        e.local,
      );
    }
    if (
      (l.flags & FLAG_DESCRIPTOR) === 0 &&
      (l.crc !== e.crc || l.csize !== e.csize || l.usize !== e.usize)
    ) {
      ctx.add(
        'zip.header-mismatch',
        `${e.name}: CRC or sizes differ between local header and central directory`,
        e.local,
      );
    }
    e.flags |= l.flags & (FLAG_ENCRYPTED | FLAG_STRONG_ENCRYPTION);
    e.data = l.data;
    e.end = l.data + e.csize;
    if (e.end > cdStart) {
      ctx.add('zip.malformed', `${e.name}: data runs into the central directory`, e.local);
      continue;
    }
    if ((e.flags | l.flags) & FLAG_DESCRIPTOR) e.end += await descriptor(src, ctx, e);
    ok.push(e);
  }
  return ok;
}

/** Overlapping entries (one data region shared by many: the overlap zip bomb) and local headers in the gaps. */
async function checkLayout(
  src: ByteSource,
  ctx: ScanContext,
  entries: Entry[],
  start: number,
  cdStart: number,
): Promise<Entry[]> {
  const sorted = [...entries].sort((a, b) => a.local - b.local);
  const hidden: Entry[] = [];
  let cursor = start;
  let gapBytes = 0;
  const gaps: [number, number][] = [];
  for (const e of sorted) {
    if (e.local < cursor) {
      ctx.add('zip.overlapping-entries', `${e.name} overlaps the entry before it`, e.local);
    } else if (e.local > cursor) gaps.push([cursor, e.local]);
    cursor = Math.max(cursor, e.end);
  }
  if (cursor < cdStart) gaps.push([cursor, cdStart]);
  for (const [a, b] of gaps) {
    // Bounded: gaps are normally empty, and a multi-GB gap would be its own anomaly.
    if (gapBytes > 64 * 1024 * 1024) break;
    const len = Math.min(b - a, 64 * 1024 * 1024);
    gapBytes += len;
    const gap = Buffer.from(await src.read(a, len));
    for (
      let i = gap.indexOf('PK\x03\x04', 0, 'latin1');
      i >= 0;
      i = gap.indexOf('PK\x03\x04', i + 4, 'latin1')
    ) {
      const at = a + i;
      ctx.add('zip.header-mismatch', `local file header at ${at} is not in the central directory`, at);
      const e = await localEntry(src, at);
      if (e !== null) hidden.push(e);
    }
  }
  return hidden;
}

/** An entry known from its local header alone (sizes must be in it: no data descriptor). */
async function localEntry(src: ByteSource, at: number): Promise<Entry | null> {
  const l = await readLocal(src, at);
  if (l === null || (l.flags & FLAG_DESCRIPTOR) !== 0 || l.data + l.csize > src.size) return null;
  return {
    name: decodeName(l.nameBytes, l.flags),
    nameBytes: l.nameBytes,
    flags: l.flags,
    method: l.method,
    crc: l.crc,
    csize: l.csize,
    usize: l.usize,
    local: at,
    data: l.data,
    end: l.data + l.csize,
    symlink: false,
    hidden: true,
  };
}

/** Streaming readers walk local headers front to back; with no usable central directory, so does the scan. */
async function walkLocals(src: ByteSource, ctx: ScanContext): Promise<Entry[]> {
  const out: Entry[] = [];
  let at = 0;
  while (out.length < ctx.limits.maxArchiveEntries) {
    const e = await localEntry(src, at);
    if (e === null) break;
    out.push(e);
    at = e.end;
  }
  return out;
}

/** The bytes of an entry: a window for stored data, inflated (capped) for deflate and zstd. */
async function entrySource(src: ByteSource, ctx: ScanContext, e: Entry): Promise<ByteSource | null> {
  const encrypted = (e.flags & (FLAG_ENCRYPTED | FLAG_STRONG_ENCRYPTION)) !== 0;
  if (e.method === METHOD_STORED) {
    if (!encrypted && e.csize !== e.usize) {
      ctx.add(
        'zip.header-mismatch',
        `${e.name}: stored entry with different compressed and uncompressed sizes`,
      );
    }
    return sliceSource(src, e.data, e.csize);
  }
  if (e.method !== METHOD_DEFLATE && e.method !== METHOD_ZSTD) {
    ctx.add('zip.unsupported-method', `${e.name}: compression method ${e.method} not inspected`);
    return null;
  }
  const limits = ctx.limits;
  const cap = Math.min(limits.maxInflatedEntry, limits.maxInflatedTotal - ctx.state.inflated);
  if (e.csize > cap || e.usize > cap) {
    ctx.add(
      'archive.decompression-limit',
      `${e.name}: ${e.usize} bytes declared, above the inflation cap; not scanned`,
    );
    return null;
  }
  const comp = await src.read(e.data, e.csize);
  let out: Buffer;
  try {
    const opts = { maxOutputLength: Math.max(1, cap) };
    out = e.method === METHOD_DEFLATE ? inflateRawSync(comp, opts) : zstdDecompressSync(comp, opts);
  } catch (err) {
    if ((err as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE') {
      ctx.add('archive.decompression-limit', `${e.name}: inflates past the cap of ${cap} bytes; not scanned`);
    } else if (!encrypted) {
      ctx.add('zip.malformed', `${e.name}: compressed data does not inflate`);
    }
    return null;
  }
  ctx.state.inflated += out.length;
  if (out.length !== e.usize) {
    ctx.add('zip.header-mismatch', `${e.name}: inflates to ${out.length} bytes, ${e.usize} declared`);
  }
  if (crc32(out) !== e.crc)
    ctx.add('zip.header-mismatch', `${e.name}: CRC-32 of the data differs from the header`);
  if (out.length > limits.bombMinSize && out.length / Math.max(1, e.csize) > limits.maxCompressionRatio) {
    ctx.add('archive.bomb', `${e.name}: inflated ${e.csize} bytes to ${out.length}`);
  }
  return new BufferSource(out);
}

function checkEntries(ctx: ScanContext, entries: readonly Entry[]): void {
  const names = new Map<string, number>();
  let declared = 0;
  for (const e of entries) {
    const c = ctx.child(e.name);
    checkEntryPath(c, e.name);
    names.set(e.name, (names.get(e.name) ?? 0) + 1);
    if (e.flags & (FLAG_ENCRYPTED | FLAG_STRONG_ENCRYPTION)) {
      c.add('zip.encrypted', `${e.name}: encrypted flag set`);
    }
    if (e.symlink) c.add('archive.link', `${e.name}: symbolic link`);
    if (e.method !== METHOD_STORED) {
      declared += e.usize;
      const ratio = e.usize / Math.max(1, e.csize);
      if (e.usize > ctx.limits.bombMinSize && ratio > ctx.limits.maxCompressionRatio) {
        c.add(
          'archive.bomb',
          `${e.name}: declares ${e.usize} bytes from ${e.csize} (ratio ${Math.round(ratio)})`,
        );
      }
    }
  }
  for (const [name, n] of names) {
    if (n > 1) ctx.add('archive.duplicate-entry', `${JSON.stringify(name)} appears ${n} times`);
  }
  if (declared > ctx.limits.maxInflatedTotal) {
    ctx.add('archive.bomb', `entries declare ${declared} uncompressed bytes in total`);
  }
}

function classify(entries: readonly Entry[]): { format: FormatName; torchPrefixes: Set<string> } {
  const names = entries.map((e) => e.name);
  const torchPrefixes = new Set<string>();
  for (const n of names) {
    const m = /^([^/]+)\/data\.pkl$/.exec(n);
    if (m?.[1] !== undefined) torchPrefixes.add(m[1]);
  }
  if (torchPrefixes.size > 0) return { format: 'pytorch-zip', torchPrefixes };
  if (names.includes('config.json') && names.includes('metadata.json'))
    return { format: 'keras', torchPrefixes };
  const files = names.filter((n) => !n.endsWith('/'));
  if (files.length > 0 && files.every((n) => n.toLowerCase().endsWith('.npy')))
    return { format: 'npz', torchPrefixes };
  return { format: 'zip', torchPrefixes };
}

/** PyTorch persistent ids: ('storage', storage_type, key, location, numel). */
function torchPid(ctx: ScanContext, keys: Set<string>): (pid: PV, offset: number) => void {
  return (pid, offset) => {
    const items = pid.t === 'tuple' ? pid.items : [];
    const [tag, , key] = items;
    if (tag?.t !== 'str' || tag.v !== 'storage' || key?.t !== 'str' || key.v === null) {
      ctx.add('torch.bad-persistent-id', 'persistent id is not a storage reference', offset);
      return;
    }
    keys.add(key.v);
  };
}

async function readJson(src: ByteSource, ctx: ScanContext, name: string): Promise<Uint8Array | null> {
  if (src.size > ctx.limits.maxJsonBytes) {
    ctx.add('keras.malformed', `${name} larger than ${ctx.limits.maxJsonBytes} bytes; not parsed`);
    return null;
  }
  return src.read(0, src.size);
}

export async function scanZip(src: ByteSource, ctx: ScanContext): Promise<FormatName> {
  const eocd = await findEocd(src);
  let entries: Entry[];
  if (eocd === null) {
    ctx.add('zip.malformed', 'no end of central directory record; walking local headers');
    entries = await walkLocals(src, ctx);
    checkEntries(ctx, entries);
  } else {
    if (!eocd.strict)
      ctx.add('zip.malformed', 'end record comment length does not reach the end of the file', eocd.pos);
    const shift = eocd.recordPos - eocd.cdSize - eocd.cdOffset;
    if (shift < 0) {
      ctx.add('zip.malformed', 'central directory offset points past its end record');
      return 'zip';
    }
    const cdStart = eocd.cdOffset + shift;
    const central = await readCentral(src, ctx, eocd, shift);
    checkEntries(ctx, central);
    entries = await checkLocals(src, ctx, central, cdStart);
    // Offsets in the central directory count from the archive start, which is `shift` bytes into the file.
    if (shift > 0) ctx.add('zip.prepended-data', `${shift} bytes before the archive`, 0);
    const hidden = await checkLayout(src, ctx, entries, shift, cdStart);
    checkEntries(ctx, hidden);
    entries.push(...hidden);
  }

  const { format, torchPrefixes } = classify(entries);
  const storageKeys = new Map<string, Set<string>>();
  // Entries sharing one local header (reported as overlapping) are scanned once: otherwise N entries on one
  // nested archive would cost N times its scan, and N^depth through nesting.
  const scanned = new Set<number>();
  for (const e of entries) {
    if (e.name.endsWith('/') && e.usize === 0) continue;
    if (scanned.has(e.local)) continue;
    scanned.add(e.local);
    const slash = e.name.indexOf('/');
    const prefix = slash > 0 ? e.name.slice(0, slash) : '';
    const rest = e.name.slice(slash + 1);
    const isTorch = torchPrefixes.has(prefix) && !e.hidden;
    // Tensor storages are raw numbers, read by torch only through data.pkl's persistent ids: checked
    // against those ids below rather than scanned (random floats can look like anything).
    if (isTorch && rest.startsWith('data/')) continue;
    const child = ctx.child(e.name);
    const body = await entrySource(src, child, e);
    if (body === null) continue;
    if (e.symlink) {
      // A symlink entry's data is its target.
      const target = Buffer.from(await body.read(0, 4096)).toString('utf8');
      checkEntryPath(child, target, 'symlink target');
      continue;
    }
    if (isTorch && rest === 'data.pkl') {
      const keys = new Set<string>();
      storageKeys.set(prefix, keys);
      await walkPickleStream(body, child, 0, { persistentId: torchPid(child, keys) });
    } else if (format === 'keras' && e.name === 'config.json') {
      const json = await readJson(body, child, e.name);
      if (json !== null) scanKerasConfig(json, child);
    } else if (format === 'keras' && e.name === 'metadata.json') {
      const json = await readJson(body, child, e.name);
      if (json !== null) scanKerasMetadata(json, child);
    } else {
      await ctx.recurse(body, e.name, { inArchive: true, entryName: e.name });
    }
  }

  for (const [prefix, keys] of storageKeys) {
    const present = new Set(
      entries.filter((e) => e.name.startsWith(`${prefix}/data/`)).map((e) => e.name.slice(prefix.length + 6)),
    );
    for (const k of keys) {
      if (!present.has(k))
        ctx.add('torch.missing-storage', `${prefix}/data.pkl references missing ${prefix}/data/${k}`);
    }
    for (const k of present) {
      if (!keys.has(k))
        ctx.add('torch.unreferenced-entry', `${prefix}/data/${k} is not referenced by data.pkl`);
    }
  }
  return format;
}

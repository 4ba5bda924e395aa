import type { ScanContext } from '../context.ts';
import { tarChecksumOk } from '../detect.ts';
import { sliceSource, type ByteSource } from '../source.ts';
import { checkEntryPath } from './archive.ts';

/*
 * Tar reader written by hand for the same reason as the zip one: the scanner must see link entries, device
 * files, GNU long names and pax overrides as they are, not as an extractor would apply them. Entry data is
 * always a window onto the source, so large members cost nothing until a format scanner reads them.
 */

function field(b: Uint8Array, at: number, len: number): string {
  const s = b.subarray(at, at + len);
  const nul = s.indexOf(0);
  return Buffer.from(nul < 0 ? s : s.subarray(0, nul)).toString('utf8');
}

/** Numeric header field: octal text, or GNU base-256 when the top bit of the first byte is set. */
function number(b: Uint8Array, at: number, len: number): number | null {
  const first = b[at] ?? 0;
  if (first & 0x80) {
    let v = first & 0x7f;
    for (let i = 1; i < len; i++) v = v * 256 + (b[at + i] ?? 0);
    return Number.isSafeInteger(v) ? v : null;
  }
  const t = field(b, at, len).trim();
  if (t === '') return 0;
  return /^[0-7]+$/.test(t) ? parseInt(t, 8) : null;
}

/** pax extended header records: "<len> <key>=<value>\n". */
function parsePax(data: Uint8Array): Map<string, string> {
  const out = new Map<string, string>();
  const text = Buffer.from(data).toString('utf8');
  let i = 0;
  while (i < text.length) {
    const sp = text.indexOf(' ', i);
    if (sp < 0) break;
    const len = Number(text.slice(i, sp));
    if (!Number.isSafeInteger(len) || len <= 0) break;
    const rec = text.slice(sp + 1, i + len - 1);
    const eq = rec.indexOf('=');
    if (eq > 0) out.set(rec.slice(0, eq), rec.slice(eq + 1));
    i += len;
  }
  return out;
}

export async function scanTar(src: ByteSource, ctx: ScanContext): Promise<void> {
  let pos = 0;
  let longName: string | null = null;
  let longLink: string | null = null;
  let pax = new Map<string, string>();
  const names = new Map<string, number>();
  let count = 0;
  while (pos + 512 <= src.size) {
    const h = await src.read(pos, 512);
    if (h.every((b) => b === 0)) break;
    if (!tarChecksumOk(h)) {
      ctx.add('tar.malformed', 'header checksum mismatch', pos);
      return;
    }
    if (++count > ctx.limits.maxArchiveEntries) {
      ctx.add('archive.entry-limit', `more than ${ctx.limits.maxArchiveEntries} entries`);
      return;
    }
    const type = String.fromCharCode(h[156] ?? 0);
    const ustar = field(h, 257, 6) === 'ustar';
    let size = number(h, 124, 12);
    const paxSize = pax.get('size');
    if (paxSize !== undefined) size = Number(paxSize);
    if (size === null || !Number.isSafeInteger(size) || size < 0) {
      ctx.add('tar.malformed', 'bad size field', pos);
      return;
    }
    const dataAt = pos + 512;
    if (dataAt + size > src.size) {
      ctx.add('tar.malformed', 'entry data runs past the end', pos);
    }
    const next = dataAt + Math.ceil(size / 512) * 512;
    if (type === 'L' || type === 'K' || type === 'x') {
      const data = await src.read(dataAt, Math.min(size, 1024 * 1024));
      if (type === 'L') longName = field(data, 0, data.length);
      else if (type === 'K') longLink = field(data, 0, data.length);
      else pax = parsePax(data);
      pos = next;
      continue;
    }
    const prefix = ustar ? field(h, 345, 155) : '';
    const name =
      longName ?? pax.get('path') ?? (prefix === '' ? field(h, 0, 100) : `${prefix}/${field(h, 0, 100)}`);
    const link = longLink ?? pax.get('linkpath') ?? field(h, 157, 100);
    longName = null;
    longLink = null;
    pax = new Map();
    pos = next;
    if (type === 'g') continue; // global pax header: metadata only
    const child = ctx.child(name);
    checkEntryPath(child, name);
    names.set(name, (names.get(name) ?? 0) + 1);
    switch (type) {
      case '0':
      case '\0':
      case '7':
      case 'S':
        await ctx.recurse(sliceSource(src, dataAt, size), name, { inArchive: true, entryName: name });
        break;
      case '1':
      case '2':
        child.add(
          'archive.link',
          `${name}: ${type === '1' ? 'hard' : 'symbolic'} link to ${JSON.stringify(link)}`,
        );
        checkEntryPath(child, link, 'link target');
        break;
      case '3':
      case '4':
      case '6':
        child.add('archive.special-file', `${name}: ${type === '6' ? 'FIFO' : 'device'} entry`);
        break;
      case '5':
        break;
      default:
        child.add('tar.malformed', `${name}: unsupported entry type ${JSON.stringify(type)}`);
    }
  }
  for (const [name, n] of names) {
    if (n > 1) ctx.add('archive.duplicate-entry', `${JSON.stringify(name)} appears ${n} times`);
  }
}

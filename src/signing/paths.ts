/**
 * Resource names (OMS v1.0 §6.1.2) and ignore paths (§6.2): relative POSIX paths, canonical, UTF-8, compared
 * byte-exactly and ordered by Unicode code point.
 */

/**
 * Orders strings by Unicode code point, which is what the spec sorts by (§5.2.1) and equals UTF-8 byte order.
 * Plain `<` on JS strings compares UTF-16 code units, which puts astral characters (surrogate pairs, U+D800–U+DFFF
 * as units) below BMP characters U+E000–U+FFFF; shifting the two ranges past each other restores code point order.
 */
export function compareCodePoints(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x !== y) return shiftSurrogates(x) - shiftSurrogates(y);
  }
  return a.length - b.length;
}

function shiftSurrogates(unit: number): number {
  if (unit < 0xd800) return unit;
  return unit >= 0xe000 ? unit - 0x800 : unit + 0x2000;
}

/**
 * Why `name` is not a canonical relative path, or undefined if it is. Canonical: non-empty, `/`-separated, not
 * absolute, no empty, `.` or `..` components (so no `//`, `./`, trailing `/`), well-formed Unicode (JSON can carry
 * lone surrogates that no UTF-8 filename can), no backslash (a separator on Windows: the same bundle must not name
 * different files on different hosts) and no NUL.
 */
export function nameProblem(name: string): string | undefined {
  if (name === '') return 'is empty';
  if (!name.isWellFormed()) return 'is not valid Unicode';
  if (name.includes('\\')) return 'contains a backslash';
  if (name.includes('\0')) return 'contains NUL';
  if (name.startsWith('/')) return 'is absolute';
  for (const part of name.split('/')) {
    if (part === '') return 'has an empty component (//, or a trailing /)';
    if (part === '.' || part === '..') return `has a "${part}" component`;
  }
  return undefined;
}

/**
 * Canonicalises an ignore-path entry (§6.2.1): `./` prefixes, interior `.` and repeated or trailing `/` collapse;
 * glob characters, absolute paths, `..` and backslashes are refused. Returns the canonical form or a reason.
 */
export function canonicalIgnorePath(entry: string): { path: string } | { problem: string } {
  if (/[*?[]/.test(entry)) return { problem: 'contains a glob character (* ? [)' };
  if (entry.startsWith('/')) return { problem: 'is absolute' };
  const parts = entry.split('/').filter((p) => p !== '' && p !== '.');
  const path = parts.join('/');
  const problem = nameProblem(path);
  return problem === undefined ? { path } : { problem };
}

/** The spec's default exclusions (§6.2), matched as top-level paths only. */
export const DEFAULT_IGNORE_PATHS: readonly string[] = ['.git', '.gitattributes', '.github', '.gitignore'];

export function shardName(path: string, start: number, end: number): string {
  return `${path}:${start}:${end}`;
}

/** Canonical decimal: no sign, no leading zeros, within the exactly representable integers. */
function parseOffset(s: string): number | undefined {
  if (!/^(0|[1-9][0-9]*)$/.test(s)) return undefined;
  const n = Number(s);
  return Number.isSafeInteger(n) ? n : undefined;
}

/**
 * Splits `path:start:end` on the last two colons (§6.3.2: paths may contain colons). Returns undefined when the
 * suffix is not two canonical decimal offsets with start < end or the path is not canonical.
 */
export function parseShardName(name: string): { path: string; start: number; end: number } | undefined {
  const second = name.lastIndexOf(':');
  const first = second > 0 ? name.lastIndexOf(':', second - 1) : -1;
  if (first <= 0) return undefined;
  const path = name.slice(0, first);
  const start = parseOffset(name.slice(first + 1, second));
  const end = parseOffset(name.slice(second + 1));
  if (start === undefined || end === undefined || start >= end || nameProblem(path) !== undefined)
    return undefined;
  return { path, start, end };
}

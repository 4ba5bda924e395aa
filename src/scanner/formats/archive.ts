import type { ScanContext } from '../context.ts';

/**
 * Checks an entry name (or a link target) the way an extractor would use it: joined to a destination
 * directory. Windows extractors treat backslashes as separators, so they are normalised before the test.
 */
export function checkEntryPath(ctx: ScanContext, name: string, what = 'entry'): void {
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(name)) {
    ctx.add('archive.unusual-path', `${what} name ${JSON.stringify(name)} has control characters`);
  }
  if (name.includes('\\')) {
    ctx.add('archive.unusual-path', `${what} name ${JSON.stringify(name)} uses backslashes`);
  }
  const traversal = pathEscapes(name);
  if (traversal !== null) {
    ctx.add('archive.path-traversal', `${what} ${JSON.stringify(name)} ${traversal}`);
  } else if (name.replaceAll('\\', '/').split('/').includes('..')) {
    ctx.add('archive.unusual-path', `${what} name ${JSON.stringify(name)} has ".." segments`);
  }
}

/** Why a relative path would leave the directory it is resolved against, or `null` if it stays inside. */
export function pathEscapes(name: string): string | null {
  const p = name.replaceAll('\\', '/');
  if (p.startsWith('//')) return 'is a UNC path';
  if (p.startsWith('/')) return 'is an absolute path';
  if (/^[A-Za-z]:/.test(p)) return 'has a drive letter';
  let depth = 0;
  for (const seg of p.split('/')) {
    if (seg === '..') {
      if (--depth < 0) return 'climbs out of the extraction directory';
    } else if (seg !== '' && seg !== '.') depth++;
  }
  return null;
}

/** Names under which a pickle is expected; anything else inside an archive is a hiding place. */
export const PICKLE_NAME = /\.(pkl|pickle|pt|pth|bin|ckpt|joblib|p|pck|sav|dat|data)$/i;

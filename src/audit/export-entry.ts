/**
 * The per-line work of the export verifier (verify.ts) that needs no context from other lines: recognising an
 * entry line exactly as `AuditLog.export` writes it, and judging its event body against its leaf hash. Pure, so
 * worker threads (verify-export-worker.ts) can do it for the verifier's sequential pass.
 */
import { canonicalJson, scanCanonicalObject } from './canonical.ts';
import type { CanonicalObjectScan } from './canonical.ts';
import { digestEquals, leafHashEncoded } from './merkle.ts';

const RFC3339_MS_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

/** The fixed parts of an entry line as `AuditLog.export` writes it (the fast path; anything else is parsed). */
const ENTRY_HEAD = Buffer.from('{"type":"entry","index":');
const ENTRY_HASH = Buffer.from(',"leafHash":"');
const ENTRY_EVENT = Buffer.from('","event":');
const NULL_EVENT = Buffer.from('null}');
const B64_HASH_LENGTH = 44;

/** An entry's event: pruned, parsed (general path), or canonical bytes recognised in place (fast path). */
export type EntryEvent =
  | null
  | { readonly obj: Record<string, unknown> }
  | { readonly bytes: Uint8Array; readonly scan: CanonicalObjectScan };

const B64_VALUES = new Int8Array(256).fill(-1);
const B64_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
for (let i = 0; i < B64_ALPHABET.length; i++) B64_VALUES[B64_ALPHABET.charCodeAt(i)] = i;

/**
 * Decodes the 44 bytes at `at` as canonical padded base64 of 32 bytes (exactly what LEAF_HASH_B64 accepts:
 * 43 alphabet characters, the last with two zero padding bits, then "="); undefined for anything else.
 */
function decodeHashB64(b: Uint8Array, at: number): Uint8Array | undefined {
  const out = new Uint8Array(32);
  let o = 0;
  for (let i = at; i < at + 40; i += 4) {
    const v0 = B64_VALUES[b[i] as number] as number;
    const v1 = B64_VALUES[b[i + 1] as number] as number;
    const v2 = B64_VALUES[b[i + 2] as number] as number;
    const v3 = B64_VALUES[b[i + 3] as number] as number;
    if ((v0 | v1 | v2 | v3) < 0) return undefined;
    const v = (v0 << 18) | (v1 << 12) | (v2 << 6) | v3;
    out[o++] = v >> 16;
    out[o++] = (v >> 8) & 0xff;
    out[o++] = v & 0xff;
  }
  const v0 = B64_VALUES[b[at + 40] as number] as number;
  const v1 = B64_VALUES[b[at + 41] as number] as number;
  const v2 = B64_VALUES[b[at + 42] as number] as number;
  if ((v0 | v1 | v2) < 0 || (v2 & 3) !== 0 || b[at + 43] !== 0x3d) return undefined;
  const v = (v0 << 18) | (v1 << 12) | (v2 << 6);
  out[30] = v >> 16;
  out[31] = (v >> 8) & 0xff;
  return out;
}

function matchAt(b: Uint8Array, at: number, want: Uint8Array): boolean {
  if (at + want.byteLength > b.byteLength) return false;
  for (let i = 0; i < want.byteLength; i++) if (b[at + i] !== want[i]) return false;
  return true;
}

/** An entry line recognised in place: its index, leaf hash and event (null when pruned). */
export interface InspectedEntry {
  readonly index: number;
  readonly leaf: Uint8Array;
  readonly event: null | { readonly bytes: Uint8Array; readonly scan: CanonicalObjectScan };
}

/**
 * Entry lines exactly as `AuditLog.export` writes it, with an event whose bytes are recognised as canonical in
 * place (`scanCanonicalObject`): no JSON.parse, no re-serialisation, the bytes are hashed as they are. It accepts
 * only lines the general path would parse to the same index, leaf hash and event, so the outcome is identical;
 * undefined (the general path takes over) for anything else.
 */
export function inspectEntryLine(b: Uint8Array): InspectedEntry | undefined {
  if (!matchAt(b, 0, ENTRY_HEAD)) return undefined;
  let p = ENTRY_HEAD.byteLength;
  const digitsStart = p;
  let index = 0;
  while (p < b.byteLength && (b[p] as number) >= 0x30 && (b[p] as number) <= 0x39) {
    index = index * 10 + ((b[p] as number) - 0x30);
    p++;
  }
  const digits = p - digitsStart;
  if (digits === 0 || digits > 16 || (digits > 1 && b[digitsStart] === 0x30) || !Number.isSafeInteger(index))
    return undefined;
  if (!matchAt(b, p, ENTRY_HASH)) return undefined;
  p += ENTRY_HASH.byteLength;
  if (p + B64_HASH_LENGTH > b.byteLength) return undefined;
  const leaf = decodeHashB64(b, p);
  if (leaf === undefined) return undefined;
  p += B64_HASH_LENGTH;
  if (!matchAt(b, p, ENTRY_EVENT)) return undefined;
  p += ENTRY_EVENT.byteLength;
  const end = b.byteLength - 1;
  if (b[end] !== 0x7d) return undefined;
  if (p + NULL_EVENT.byteLength === b.byteLength && matchAt(b, p, NULL_EVENT)) {
    return { index, leaf, event: null };
  }
  const scan = scanCanonicalObject(b, p, end);
  if (scan === undefined) return undefined;
  return { index, leaf, event: { bytes: b.subarray(p, end), scan } };
}

/** Defects of an event body, as bit flags; 0 when the body is sound. */
export const BODY_INDEX_MISMATCH = 1;
export const BODY_TIME_INVALID = 2;
export const BODY_NOT_CANONICALISABLE = 4;
export const BODY_HASH_MISMATCH = 8;

/**
 * Judges an entry's (non-null) event: its `index` must be the entry's (nothing else is judged otherwise), its
 * `time` RFC 3339 UTC with milliseconds, and its canonical bytes must hash to the leaf hash.
 */
export function judgeEventBody(index: number, leaf: Uint8Array, event: Exclude<EntryEvent, null>): number {
  const parsed = 'obj' in event ? event.obj : undefined;
  if ((parsed !== undefined ? parsed.index : (event as { scan: CanonicalObjectScan }).scan.index) !== index) {
    return BODY_INDEX_MISMATCH;
  }
  const time = parsed !== undefined ? parsed.time : (event as { scan: CanonicalObjectScan }).scan.time;
  let verdict = typeof time !== 'string' || !RFC3339_MS_UTC.test(time) ? BODY_TIME_INVALID : 0;
  let canonical: Uint8Array;
  if (parsed === undefined) {
    canonical = (event as { bytes: Uint8Array }).bytes;
  } else {
    try {
      canonical = Buffer.from(canonicalJson(parsed), 'utf8');
    } catch {
      return verdict | BODY_NOT_CANONICALISABLE;
    }
  }
  if (!digestEquals(leafHashEncoded(canonical, 'binary'), leaf)) verdict |= BODY_HASH_MISMATCH;
  return verdict;
}

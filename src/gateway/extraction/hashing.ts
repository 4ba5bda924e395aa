/**
 * Non-cryptographic hashing for similarity sketches. Nothing here protects a secret: these hashes only
 * decide which queries look alike, and an attacker who can predict them gains nothing they could not get by
 * varying their queries anyway.
 */

/** 32-bit FNV-1a over UTF-16 code units, seeded, finished with murmur3's avalanche. */
export function hash32(text: string, seed: number): number {
  let h = (0x811c9dc5 ^ seed) >>> 0;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return fmix32(h);
}

export function fmix32(x: number): number {
  let h = x >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

export function popcount32(x: number): number {
  let v = x >>> 0;
  v -= (v >>> 1) & 0x55555555;
  v = (v & 0x33333333) + ((v >>> 2) & 0x33333333);
  return (Math.imul((v + (v >>> 4)) & 0x0f0f0f0f, 0x01010101) >>> 24) & 0xff;
}

/** Lower-cased word tokens (letters and digits of any script), at most `limit` of them. */
export function tokenize(text: string, limit: number): string[] {
  const out: string[] = [];
  for (const m of text.toLowerCase().matchAll(/[\p{L}\p{N}]+/gu)) {
    out.push(m[0]);
    if (out.length >= limit) break;
  }
  return out;
}

/** A 64-bit SimHash as two 32-bit halves. */
export interface SimHash {
  readonly hi: number;
  readonly lo: number;
}

/**
 * Charikar's SimHash over word unigrams and bigrams (the shingles): each shingle votes ±1 on each of the 64
 * bits according to its hash, the sign of the tally is the bit. The Hamming distance between two SimHashes
 * estimates the angle between the shingle-count vectors, so near-duplicate prompts land a few bits apart
 * while unrelated ones are about 32 apart (Manku, Jain and Das Sarma, WWW 2007).
 */
export function simHash(tokens: readonly string[]): SimHash {
  const tally = new Int32Array(64);
  const vote = (shingle: string): void => {
    const a = hash32(shingle, 0x9e3779b9);
    const b = hash32(shingle, 0x7f4a7c15);
    for (let bit = 0; bit < 32; bit++) {
      tally[bit] = (tally[bit] ?? 0) + ((a >>> bit) & 1 ? 1 : -1);
      tally[bit + 32] = (tally[bit + 32] ?? 0) + ((b >>> bit) & 1 ? 1 : -1);
    }
  };
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i] ?? '';
    vote(t);
    if (i + 1 < tokens.length) vote(`${t} ${tokens[i + 1] ?? ''}`);
  }
  let hi = 0;
  let lo = 0;
  for (let bit = 0; bit < 32; bit++) {
    if ((tally[bit] ?? 0) > 0) lo |= 1 << bit;
    if ((tally[bit + 32] ?? 0) > 0) hi |= 1 << bit;
  }
  return { hi: hi >>> 0, lo: lo >>> 0 };
}

export function hamming(a: SimHash, b: SimHash): number {
  return popcount32(a.hi ^ b.hi) + popcount32(a.lo ^ b.lo);
}

/**
 * Deterministic generator (mulberry32) for reservoir replacement: the monitor must behave the same on the
 * same input so that its decisions can be replayed and tested.
 */
export class Mulberry32 {
  #state: number;
  constructor(seed: number) {
    this.#state = seed >>> 0;
  }
  /** Uniform in [0, 1). */
  next(): number {
    this.#state = (this.#state + 0x6d2b79f5) >>> 0;
    let t = this.#state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
}

import { readFileSync, existsSync } from 'node:fs';
import path from 'node:path';

/**
 * External test vectors live in `../shared/vectors/` beside the project (Wycheproof, RFC 6962 Merkle, OMS).
 * They are never copied into the project. A missing folder is a test failure, never a skip.
 */
export const vectorsRoot = path.resolve(import.meta.dirname, '..', '..', '..', 'shared', 'vectors');

export function vectorPath(...parts: string[]): string {
  const p = path.join(vectorsRoot, ...parts);
  if (!existsSync(p)) {
    throw new Error(`test vectors not found at ${p}: the shared/ folder must sit beside the project`);
  }
  return p;
}

export interface WycheproofTest {
  tcId: number;
  comment: string;
  result: 'valid' | 'invalid' | 'acceptable';
  flags: string[];
  [field: string]: unknown;
}

export interface WycheproofGroup {
  type?: string;
  tests: WycheproofTest[];
  [field: string]: unknown;
}

export interface WycheproofFile {
  algorithm: string;
  numberOfTests: number;
  testGroups: WycheproofGroup[];
}

export function loadWycheproof(file: string): WycheproofFile {
  const parsed = JSON.parse(readFileSync(vectorPath('wycheproof', file), 'utf8')) as WycheproofFile;
  const count = parsed.testGroups.reduce((n, g) => n + g.tests.length, 0);
  if (count === 0 || count !== parsed.numberOfTests) {
    throw new Error(`${file}: expected ${parsed.numberOfTests} tests, found ${count}`);
  }
  return parsed;
}

export function hex(s: unknown): Buffer {
  if (typeof s !== 'string') throw new Error('vector field is not a hex string');
  return Buffer.from(s, 'hex');
}

import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import assert from 'node:assert/strict';
import { scanBuffer, scanFile, type ScanOptions } from '../../src/scanner/index.ts';
import type { ScanResult, Verdict } from '../../src/scanner/types.ts';

/** Builds every sample of samples.py into a fresh temp dir; returns it and a cleanup. */
export function makeSamples(): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'warden-scanner-'));
  execFileSync('python3', [path.join(import.meta.dirname, 'samples.py'), dir], { stdio: 'pipe' });
  return {
    dir,
    cleanup: () => {
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Runs a Python snippet (standard library only) with `out` bound to an output path. */
export function python(code: string, out: string): void {
  execFileSync('python3', ['-c', `import sys\nout = sys.argv[1]\n${code}`, out], { stdio: 'pipe' });
}

export function ruleIds(r: ScanResult): string[] {
  return [...new Set(r.findings.map((f) => f.rule))].sort();
}

export function describeResult(r: ScanResult): string {
  return `${r.verdict} [${r.format}]\n${r.findings.map((f) => `  ${f.severity} ${f.rule} @${f.path}: ${f.message}`).join('\n')}`;
}

export interface Expect {
  verdict: Verdict;
  rules?: readonly string[];
  absent?: readonly string[];
  format?: ScanResult['format'];
}

/** Scans a sample both as a file and as a buffer; both must agree and meet the expectation. */
export async function check(
  dir: string,
  rel: string,
  want: Expect,
  options: ScanOptions = {},
): Promise<ScanResult> {
  const file = path.join(dir, rel);
  const r = await scanFile(file, options);
  const msg = `${rel}: ${describeResult(r)}`;
  assert.equal(r.verdict, want.verdict, msg);
  for (const rule of want.rules ?? []) assert.ok(ruleIds(r).includes(rule), `${msg}\nmissing ${rule}`);
  for (const rule of want.absent ?? []) assert.ok(!ruleIds(r).includes(rule), `${msg}\nunexpected ${rule}`);
  if (want.format !== undefined) assert.equal(r.format, want.format, msg);
  const b = await scanBuffer(readFileSync(file), path.basename(file), options);
  assert.deepEqual(b, r, `${rel}: buffer and file scans differ`);
  return r;
}

import { open } from 'node:fs/promises';
import path from 'node:path';
import { ScanContext, ScanState } from './context.ts';
import { detectFormat, HEAD_BYTES } from './detect.ts';
import { PICKLE_NAME } from './formats/archive.ts';
import { scanCompressed } from './formats/compressed.ts';
import { scanGguf } from './formats/gguf.ts';
import { scanHdf5 } from './formats/hdf5.ts';
import { scanNpy } from './formats/npy.ts';
import { scanOnnx } from './formats/onnx.ts';
import { walkPickleStream } from './formats/pickle.ts';
import { scanSafetensors } from './formats/safetensors.ts';
import { scanTar } from './formats/tar.ts';
import { hasZipAtTail, scanZip } from './formats/zip.ts';
import { DEFAULT_LIMITS, RULES_VERSION } from './rules.ts';
import { BufferSource, FileSource, type ByteSource } from './source.ts';
import type { Finding, FormatName, ScanLimits, ScanResult, Verdict } from './types.ts';

export interface ScanOptions {
  /** Overrides of `DEFAULT_LIMITS`. */
  limits?: Partial<ScanLimits>;
}

/** Formats a file extension promises; a different content type is worth a note. */
const EXTENSION_FORMATS: Readonly<Record<string, readonly FormatName[]>> = {
  safetensors: ['safetensors'],
  npy: ['npy'],
  npz: ['npz', 'zip'],
  onnx: ['onnx'],
  gguf: ['gguf'],
  keras: ['keras'],
  h5: ['hdf5'],
  hdf5: ['hdf5'],
  pkl: ['pickle', 'joblib', 'pytorch-legacy'],
  pickle: ['pickle', 'joblib', 'pytorch-legacy'],
  joblib: ['joblib', 'pickle', 'zlib', 'gzip', 'bzip2', 'xz', 'lz4', 'zstd'],
  pt: ['pytorch-zip', 'pytorch-legacy', 'pickle', 'zip'],
  pth: ['pytorch-zip', 'pytorch-legacy', 'pickle', 'zip'],
  ckpt: ['pytorch-zip', 'pytorch-legacy', 'pickle', 'zip'],
  zip: ['zip', 'pytorch-zip', 'npz', 'keras'],
  tar: ['tar'],
  gz: ['gzip'],
  tgz: ['gzip'],
  txt: ['unknown'],
  json: ['unknown'],
  md: ['unknown'],
};

const PICKLE_FORMATS = new Set<FormatName>(['pickle', 'joblib', 'pytorch-legacy']);

/**
 * Inside archives, a pickle under a non-pickle name is a hiding place; at top level, any content that
 * contradicts a known extension is worth a note (loaders choose their parser by extension).
 */
function checkName(ctx: ScanContext, format: FormatName, name: string | undefined, inArchive: boolean): void {
  if (name === undefined) return;
  if (inArchive) {
    if (PICKLE_FORMATS.has(format) && !PICKLE_NAME.test(name)) {
      ctx.add(
        'archive.hidden-pickle',
        `${JSON.stringify(name)} holds a ${format} without a pickle file name`,
      );
    }
    return;
  }
  const ext = path.extname(name).slice(1).toLowerCase();
  const expected = EXTENSION_FORMATS[ext];
  if (expected !== undefined && !expected.includes(format)) {
    ctx.add('format.extension-mismatch', `named .${ext} but the content is ${format}`);
  }
}

/** Detects the content type of `src` and runs the matching scanner; returns the (refined) format. */
async function scanObject(
  src: ByteSource,
  ctx: ScanContext,
  hint: { inArchive?: boolean; entryName?: string } = {},
): Promise<FormatName> {
  const head = await src.read(0, HEAD_BYTES);
  let format = detectFormat(head, src.size);
  // Python's zipfile finds archives by their end record, so bytes of another format with a zip appended
  // open as a zip too: scan that reading as well.
  const zipTail = format !== 'zip' && (await hasZipAtTail(src));
  if (zipTail && format !== 'unknown') {
    ctx.add('format.polyglot', `${format} content that also opens as a zip archive from its end`);
  }
  switch (format) {
    case 'pickle':
    case 'joblib': {
      const r = await walkPickleStream(src, ctx);
      if (r.joblib) format = 'joblib';
      break;
    }
    case 'pytorch-legacy':
      ctx.add(
        'torch.legacy-format',
        'legacy PyTorch serialisation: magic, protocol, sys_info, data and storage-key pickles',
      );
      await walkPickleStream(src, ctx, 0, { expected: 5, maxPickles: 5 });
      break;
    case 'zip':
    case 'pytorch-zip':
    case 'npz':
    case 'keras':
      format = await scanZip(src, ctx);
      break;
    case 'npy':
      await scanNpy(src, ctx);
      break;
    case 'safetensors':
      await scanSafetensors(src, ctx);
      break;
    case 'onnx':
      await scanOnnx(src, ctx);
      break;
    case 'gguf':
      await scanGguf(src, ctx);
      break;
    case 'hdf5':
      await scanHdf5(src, ctx);
      break;
    case 'tar':
      await scanTar(src, ctx);
      break;
    case 'gzip':
    case 'zlib':
    case 'zstd':
      await scanCompressed(src, ctx, format);
      break;
    case 'bzip2':
    case 'xz':
    case 'lz4':
      ctx.add('compression.unsupported', `${format} stream: content not inspected`);
      break;
    case 'unknown':
      if (!zipTail && hint.inArchive !== true) ctx.add('format.unknown', 'content type not recognised');
      break;
  }
  if (zipTail) {
    const zipFormat = await scanZip(src, ctx);
    if (format === 'unknown') format = zipFormat;
  }
  checkName(ctx, format, hint.entryName, hint.inArchive === true);
  return format;
}

const RANK: Readonly<Record<Finding['severity'], number>> = {
  info: 0,
  low: 1,
  medium: 2,
  high: 3,
  critical: 4,
};

/** critical: malicious; high or medium: suspicious; a scan that could not finish: error; else clean. */
export function verdictOf(findings: readonly Finding[]): Verdict {
  if (findings.some((f) => f.severity === 'critical')) return 'malicious';
  if (findings.some((f) => f.rule === 'scan.error')) return 'error';
  if (findings.some((f) => f.severity === 'high' || f.severity === 'medium')) return 'suspicious';
  return 'clean';
}

async function run(src: ByteSource, name: string | undefined, options: ScanOptions): Promise<ScanResult> {
  const state = new ScanState({ ...DEFAULT_LIMITS, ...options.limits });
  const ctx = new ScanContext(state, '', 0, scanObject);
  let format: FormatName = 'unknown';
  try {
    format = await scanObject(src, ctx, name === undefined ? {} : { entryName: name });
  } catch (e) {
    state.add('scan.error', `scan failed: ${e instanceof Error ? e.message : String(e)}`, '');
  }
  const findings = [...state.findings].sort((a, b) => RANK[b.severity] - RANK[a.severity]);
  return { verdict: verdictOf(findings), findings, rulesVersion: RULES_VERSION, format };
}

/**
 * Scans any random-access source (a file, an object-store range reader...). Reads stay bounded: see
 * `scanFile`.
 */
export function scanSource(
  source: ByteSource,
  name?: string,
  options: ScanOptions = {},
): Promise<ScanResult> {
  return run(source, name, options);
}

/** Scans model bytes held in memory. `name` only feeds the extension check; detection uses the bytes. */
export function scanBuffer(bytes: Uint8Array, name?: string, options: ScanOptions = {}): Promise<ScanResult> {
  return run(new BufferSource(bytes), name, options);
}

/**
 * Scans a model file with bounded positional reads: safetensors data, tensor storages in zips and skipped
 * pickle payloads are never read, and pickles are walked in chunks.
 */
export async function scanFile(file: string, options: ScanOptions = {}): Promise<ScanResult> {
  let handle;
  try {
    handle = await open(file, 'r');
  } catch (e) {
    const finding: Finding = {
      severity: 'high',
      rule: 'scan.error',
      message: `cannot open: ${e instanceof Error ? e.message : String(e)}`,
      path: '',
    };
    return { verdict: 'error', findings: [finding], rulesVersion: RULES_VERSION, format: 'unknown' };
  }
  try {
    const { size } = await handle.stat();
    return await run(new FileSource(handle, size), path.basename(file), options);
  } finally {
    await handle.close();
  }
}

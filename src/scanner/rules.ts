import type { ScanLimits, Severity } from './types.ts';

/**
 * Version of the rule set. Bump it whenever a rule, a severity, the allow-list or a deny-list changes: the
 * registry re-scans stored model versions whose results carry an older value.
 */
export const RULES_VERSION = '2025.1';

export interface RuleInfo {
  severity: Severity;
  description: string;
}

/** Every rule the scanner can report. Ids are stable; severities are fixed per rule. */
export const RULES = {
  'scan.error': {
    severity: 'high',
    description: 'The scan could not complete (I/O error or internal failure).',
  },
  'format.unknown': { severity: 'info', description: 'Content type not recognised; nothing was inspected.' },
  'format.polyglot': {
    severity: 'high',
    description:
      'The bytes are valid as two formats at once (e.g. a pickle that is also a zip); loaders disagree.',
  },
  'format.extension-mismatch': {
    severity: 'low',
    description: 'The file name extension does not match the content type detected from the bytes.',
  },

  'pickle.dangerous-global': {
    severity: 'critical',
    description:
      'A pickle imports a callable known to run code, touch files, processes or network, or load nested pickles.',
  },
  'pickle.unknown-global': {
    severity: 'medium',
    description:
      'A pickle imports a global that is not on the allow-list; it may run arbitrary code when called.',
  },
  'pickle.unresolved-global': {
    severity: 'critical',
    description:
      'STACK_GLOBAL operands are not plain strings the scanner can read; the import target is hidden.',
  },
  'pickle.ext-code': {
    severity: 'critical',
    description:
      'EXT1/EXT2/EXT4 imports a global through the extension registry; its target cannot be known.',
  },
  'pickle.indirect-call': {
    severity: 'high',
    description: 'A pickle calls the result of another call or of persistent_load (gadget chain).',
  },
  'pickle.build-on-global': {
    severity: 'high',
    description: 'BUILD sets attributes on a class or module instead of an instance (monkey-patching).',
  },
  'pickle.build-dunder-state': {
    severity: 'high',
    description: 'BUILD state sets dunder attributes such as __setstate__ or __reduce__.',
  },
  'pickle.codecs-unusual': {
    severity: 'medium',
    description: '_codecs.encode is used other than as (str, "latin1"), the only way Python 3 pickles bytes.',
  },
  'pickle.nested-loader': {
    severity: 'medium',
    description:
      'A benign-looking loader deserialises nested bytes (torch.storage._load_from_bytes); they are scanned too.',
  },
  'pickle.nested-unscanned': {
    severity: 'high',
    description:
      'A nested deserialiser is fed bytes the scanner cannot reconstruct, or more nested payloads than the cap.',
  },
  'pickle.malformed': {
    severity: 'medium',
    description: 'Invalid opcode, truncated data, stack underflow or similar; the loader stops there too.',
  },
  'pickle.trailing-data': {
    severity: 'low',
    description: 'Bytes after the last pickle that are not a pickle.',
  },
  'pickle.limit-exceeded': {
    severity: 'medium',
    description: 'A work cap (opcodes, memo, stack, marks, line length) was hit; the rest was not scanned.',
  },
  'pickle.out-of-band-buffer': {
    severity: 'low',
    description: 'Protocol-5 out-of-band buffers (NEXT_BUFFER) are used; data comes from outside the file.',
  },

  'torch.legacy-format': { severity: 'info', description: 'Legacy (pre-1.6) PyTorch serialisation.' },
  'torch.bad-persistent-id': {
    severity: 'medium',
    description: "A PyTorch persistent id is not a ('storage', type, key, location, numel) tuple.",
  },
  'torch.missing-storage': {
    severity: 'medium',
    description: 'data.pkl references a storage record that is not in the archive.',
  },
  'torch.unreferenced-entry': {
    severity: 'low',
    description: 'An archive entry under data/ is not referenced by data.pkl.',
  },

  'joblib.unparsed-array': {
    severity: 'medium',
    description:
      'A joblib array wrapper whose raw data length cannot be computed; the stream after it was not scanned.',
  },
  'npy.object-dtype': {
    severity: 'medium',
    description:
      'An object-dtype array: its payload is a pickle (np.load needs allow_pickle=True). The pickle is scanned.',
  },
  'npy.malformed': {
    severity: 'medium',
    description: 'The .npy header is not a strict, well-formed header dict.',
  },
  'npy.size-mismatch': {
    severity: 'low',
    description: 'The .npy data length does not match shape and dtype.',
  },

  'safetensors.header-too-large': {
    severity: 'high',
    description: 'Header length above the cap (100 MB by default) or beyond the end of the file.',
  },
  'safetensors.malformed-header': {
    severity: 'high',
    description: 'The header is not UTF-8 JSON describing an object.',
  },
  'safetensors.duplicate-key': {
    severity: 'high',
    description: 'The header JSON repeats a key; parsers disagree on which value wins.',
  },
  'safetensors.invalid-metadata': {
    severity: 'medium',
    description: '__metadata__ is not an object of string to string.',
  },
  'safetensors.invalid-tensor': {
    severity: 'high',
    description: 'A tensor entry has an unknown dtype, a bad shape, or bad data_offsets.',
  },
  'safetensors.size-mismatch': {
    severity: 'high',
    description: 'data_offsets length differs from product(shape) times the dtype size.',
  },
  'safetensors.layout': {
    severity: 'high',
    description: 'Tensor data regions overlap, leave gaps, or do not cover the data buffer exactly.',
  },
  'safetensors.trailing-bytes': {
    severity: 'high',
    description: 'Bytes after the last tensor: room to smuggle a second payload.',
  },
  'safetensors.suspicious-key': {
    severity: 'low',
    description: 'A tensor is named __proto__, constructor or prototype (aimed at JavaScript consumers).',
  },
  'safetensors.unknown-field': {
    severity: 'low',
    description: 'A tensor entry carries fields beyond dtype, shape, data_offsets.',
  },

  'keras.lambda-layer': {
    severity: 'high',
    description: 'A Lambda layer: marshalled Python bytecode that runs when loaded with safe_mode=False.',
  },
  'keras.lambda-dangerous-code': {
    severity: 'critical',
    description: 'Lambda bytecode names os/subprocess/eval/exec or similar.',
  },
  'keras.custom-object': {
    severity: 'medium',
    description: 'A custom (registered_name) object: loading imports and runs code outside Keras.',
  },
  'keras.external-module': {
    severity: 'medium',
    description: 'A config object refers to a module outside keras.*.',
  },
  'keras.dangerous-module': {
    severity: 'critical',
    description: 'A config object refers to a module/function that runs code (os, subprocess, builtins...).',
  },
  'keras.malformed': {
    severity: 'medium',
    description: 'config.json or metadata.json is missing or invalid.',
  },

  'onnx.external-data-traversal': {
    severity: 'critical',
    description:
      'An external_data location is absolute, has a drive/UNC prefix, or escapes the model directory.',
  },
  'onnx.external-data': { severity: 'info', description: 'Tensors are stored in external files.' },
  'onnx.custom-domain': {
    severity: 'info',
    description: 'Operators from a non-standard domain; running them needs a custom-op library.',
  },
  'onnx.malformed': {
    severity: 'medium',
    description: 'The protobuf structure of the ModelProto is invalid.',
  },

  'gguf.malformed': {
    severity: 'high',
    description:
      'GGUF header counts, lengths, types or offsets are out of bounds (parser-exploit territory).',
  },
  'gguf.legacy-version': { severity: 'low', description: 'GGUF version 1, which loaders no longer accept.' },
  'gguf.template-injection': {
    severity: 'critical',
    description: 'A Jinja chat template reaches for Python internals (server-side template injection).',
  },

  'archive.path-traversal': {
    severity: 'critical',
    description: 'An entry name or link target is absolute, has a drive letter, or climbs out with "..".',
  },
  'archive.unusual-path': {
    severity: 'low',
    description: 'An entry name has backslashes, NUL or control characters.',
  },
  'archive.link': { severity: 'high', description: 'A symbolic or hard link entry.' },
  'archive.special-file': { severity: 'high', description: 'A device, FIFO or other special file entry.' },
  'archive.bomb': {
    severity: 'high',
    description: 'Compression ratio or total declared size beyond the caps (decompression bomb).',
  },
  'archive.decompression-limit': {
    severity: 'high',
    description: 'Inflating an entry or stream hit the size cap; the rest was not scanned.',
  },
  'archive.depth-limit': {
    severity: 'medium',
    description: 'Containers nested deeper than the cap; not scanned.',
  },
  'archive.duplicate-entry': {
    severity: 'high',
    description: 'Two entries share a name; readers disagree on which one they return.',
  },
  'archive.entry-limit': {
    severity: 'medium',
    description: 'More entries than the cap; the rest was not scanned.',
  },
  'archive.hidden-pickle': {
    severity: 'medium',
    description: 'A pickle stored under a name that does not say pickle (e.g. .txt, .bin in an archive).',
  },
  'zip.header-mismatch': {
    severity: 'high',
    description: 'Local file header and central directory disagree (name, sizes, method, flags).',
  },
  'zip.encrypted': {
    severity: 'medium',
    description: 'The encrypted flag is set; content is scanned as if it were not, where possible.',
  },
  'zip.unsupported-method': {
    severity: 'medium',
    description: 'An entry uses a compression method the scanner cannot inflate; not scanned.',
  },
  'zip.overlapping-entries': {
    severity: 'high',
    description: 'Entries share or overlap their data (overlap-based zip bombs, hidden entries).',
  },
  'zip.prepended-data': {
    severity: 'medium',
    description: 'Bytes before the first local header (self-extractor or polyglot).',
  },
  'zip.malformed': { severity: 'medium', description: 'Zip structure is invalid or truncated.' },
  'tar.malformed': { severity: 'medium', description: 'Tar header checksum, size or structure is invalid.' },
  'compression.unsupported': {
    severity: 'medium',
    description: 'A compressed stream the scanner cannot inflate (bzip2, xz, lz4); content not scanned.',
  },
  'compression.malformed': { severity: 'medium', description: 'A gzip/zlib/zstd stream fails to inflate.' },
} as const satisfies Record<string, RuleInfo>;

export type RuleId = keyof typeof RULES;

export const DEFAULT_LIMITS: Readonly<ScanLimits> = Object.freeze({
  maxDepth: 5,
  maxPickleOpcodes: 200_000_000,
  maxPickleMemo: 4_000_000,
  maxPickleStack: 2_000_000,
  maxPickleMarks: 100_000,
  maxPickleLine: 16 * 1024 * 1024,
  maxNestedPickles: 64,
  maxSafetensorsHeader: 100_000_000,
  maxInflatedEntry: 512 * 1024 * 1024,
  maxInflatedTotal: 2 * 1024 * 1024 * 1024,
  maxCompressionRatio: 200,
  bombMinSize: 16 * 1024 * 1024,
  maxArchiveEntries: 200_000,
  maxJsonBytes: 64 * 1024 * 1024,
  maxGgufString: 64 * 1024 * 1024,
  maxGgufArray: 50_000_000,
});

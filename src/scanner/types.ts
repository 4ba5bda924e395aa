/** Public types of the malicious-model scanner. */

export type Severity = 'info' | 'low' | 'medium' | 'high' | 'critical';

export type Verdict = 'clean' | 'suspicious' | 'malicious' | 'error';

export type FormatName =
  | 'pickle'
  | 'pytorch-legacy'
  | 'joblib'
  | 'zip'
  | 'pytorch-zip'
  | 'npz'
  | 'keras'
  | 'npy'
  | 'safetensors'
  | 'onnx'
  | 'gguf'
  | 'hdf5'
  | 'tar'
  | 'gzip'
  | 'zlib'
  | 'bzip2'
  | 'xz'
  | 'lz4'
  | 'zstd'
  | 'unknown';

export interface Finding {
  severity: Severity;
  /** Stable rule id, e.g. `pickle.dangerous-global`; see `RULES`. */
  rule: string;
  message: string;
  /** Where in the container tree: '' for the scanned object itself, `entry!inner` for nested entries. */
  path: string;
  /** Byte offset inside the object named by `path`, where one is meaningful. */
  offset?: number;
}

export interface ScanResult {
  verdict: Verdict;
  findings: Finding[];
  /** Bumped whenever rules change, so stored scan results can be recognised as stale. */
  rulesVersion: string;
  /** Content type of the top-level object, detected from its bytes. */
  format: FormatName;
}

/** Caps on the work and memory one scan may spend. Every cap reached is reported as a finding. */
export interface ScanLimits {
  /** Nesting depth of containers (archive in archive, pickle inside npy inside zip...). */
  maxDepth: number;
  /** Opcodes walked in one pickle stream, all concatenated pickles included. */
  maxPickleOpcodes: number;
  /** Memo entries of one pickle. */
  maxPickleMemo: number;
  /** Values on the simulated stack of one pickle. */
  maxPickleStack: number;
  /** Open MARKs (container nesting) of one pickle. */
  maxPickleMarks: number;
  /** Longest protocol-0 text line (GLOBAL, INT, STRING...) accepted. */
  maxPickleLine: number;
  /** Nested pickle payloads (`pickle.loads(b'...')`) scanned per pickle. */
  maxNestedPickles: number;
  /** Safetensors header length; the reference implementation refuses more than 100 MB. */
  maxSafetensorsHeader: number;
  /** Bytes one archive entry or compressed stream may inflate to before it is left unscanned. */
  maxInflatedEntry: number;
  /** Bytes all inflation in one scan may produce. */
  maxInflatedTotal: number;
  /** Uncompressed/compressed ratio above which an entry counts as a bomb (with `bombMinSize`). */
  maxCompressionRatio: number;
  /** Entries under this uncompressed size are never called bombs, whatever their ratio. */
  bombMinSize: number;
  /** Entries of one archive. */
  maxArchiveEntries: number;
  /** JSON documents read out of containers (Keras config, metadata). */
  maxJsonBytes: number;
  /** One GGUF string (key or value). */
  maxGgufString: number;
  /** Entries of one GGUF array value. */
  maxGgufArray: number;
}

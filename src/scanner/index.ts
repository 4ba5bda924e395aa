/**
 * Malicious-model scanner: screens model files (pickle, PyTorch, NumPy, joblib, safetensors, Keras, ONNX,
 * GGUF, archives) for code-execution payloads and parser attacks. It never executes or deserialises them.
 */
export { scanBuffer, scanFile, scanSource, verdictOf, type ScanOptions } from './scan.ts';
export { BufferSource, type ByteSource } from './source.ts';
export { detectFormat } from './detect.ts';
export { RULES, RULES_VERSION, DEFAULT_LIMITS, type RuleId, type RuleInfo } from './rules.ts';
export { allowList, classifyGlobal, type GlobalClass, type GlobalLevel } from './pickle/globals.ts';
export type { Finding, FormatName, ScanLimits, ScanResult, Severity, Verdict } from './types.ts';

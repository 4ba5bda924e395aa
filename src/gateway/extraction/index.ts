/**
 * Model-extraction detection for the inference gateway: PRADA, bursts, near-duplicates, boundary probing,
 * input-space coverage and off-hours use, per principal and aggregated per source network and
 * organisation, mapped to actions by policy. Pure logic, no I/O. See docs/extraction-detection.md.
 */
export { ExtractionMonitor } from './monitor.ts';
export type { ExtractionStats } from './monitor.ts';
export {
  DEFAULT_CAPS,
  DEFAULT_DISABLED,
  DEFAULT_PARAMS,
  DEFAULT_POLICY,
  ExtractionConfigError,
} from './config.ts';
export { ACTIONS, DETECTORS, SCOPES } from './types.ts';
export type {
  Action,
  BoundaryParams,
  BurstParams,
  BusinessHours,
  ConfigurableDetector,
  CoverageParams,
  DetectorName,
  DetectorParams,
  DetectorSetting,
  ExtractionOptions,
  ExtractionPolicy,
  NearDuplicateParams,
  Observation,
  ObserveResult,
  OffHoursParams,
  PolicyRule,
  PradaParams,
  Scope,
  Verdict,
} from './types.ts';
export {
  SHAPIRO_WILK_MAX_N,
  SHAPIRO_WILK_MIN_N,
  ShapiroWilkError,
  shapiroWilk,
  shapiroWilkCoefficients,
  shapiroWilkSorted,
} from './shapiro-wilk.ts';
export type { ShapiroWilkErrorCode, ShapiroWilkResult } from './shapiro-wilk.ts';
export { normalCdf, normalQuantile, normalSf } from './normal.ts';
export { hamming, simHash, tokenize } from './hashing.ts';
export type { SimHash } from './hashing.ts';

/**
 * PII and secret detection: detectors with checksum validation, context-aware confidence, overlap
 * resolution, redact / mask / pseudonymize / block actions, and a streaming filter for model output.
 * Pure logic, no I/O. Findings never carry the matched value.
 */
export { ENTITY_TYPES } from './types.ts';
export type { Detector, EntityType, Finding, Validation, ValidationStrength } from './types.ts';

export { PrivacyEngine } from './engine.ts';
export type { AppliedFinding, ApplyResult, EngineOptions } from './engine.ts';

export { PrivacyStream, minimumHoldBack } from './stream.ts';
export type { BlockReason, StreamOptions } from './stream.ts';

export { ACTIONS, CompiledPolicy, MIN_PSEUDONYM_KEY_BYTES } from './policy.ts';
export type { Action, Policy } from './policy.ts';

export {
  CONTEXT_AFTER,
  CONTEXT_BEFORE,
  CONTEXT_BOOST,
  CONTEXT_PENALTY,
  DEFAULT_THRESHOLD,
} from './context.ts';

export { defaultDetectors } from './detectors/index.ts';
export type { DefaultDetectorOptions } from './detectors/index.ts';
export { creditCardDetector, cardBrand } from './detectors/credit-card.ts';
export { bitcoinDetector, ethereumDetector } from './detectors/crypto-address.ts';
export { emailDetector } from './detectors/email.ts';
export { ibanDetector, IBAN_LENGTHS } from './detectors/iban.ts';
export { aadhaarDetector, panDetector } from './detectors/india.ts';
export { ipv4Detector, ipv6Detector } from './detectors/ip.ts';
export { phoneDetector } from './detectors/phone.ts';
export type { PhoneDetectorOptions } from './detectors/phone.ts';
export { privateKeyDetector } from './detectors/private-key.ts';
export {
  apiKeyDetector,
  highEntropyDetector,
  jwtDetector,
  secretAssignmentDetector,
  ENTROPY_THRESHOLD,
  HEX_ENTROPY_THRESHOLD,
} from './detectors/secrets.ts';
export { nhsDetector, ninoDetector } from './detectors/uk.ts';
export { spelledCardDetector, spelledSsnDetector } from './detectors/spelled.ts';
export { usSsnDetector } from './detectors/us-ssn.ts';

export {
  base58CheckDecode,
  eip55Checksum,
  ibanMod97,
  luhnValid,
  nhsValid,
  segwitDecode,
  shannonEntropy,
  verhoeffValid,
} from './checksums.ts';
export { keccak256 } from './keccak.ts';

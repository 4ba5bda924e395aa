/**
 * Core types of the PII and secret detection engine. Nothing here carries a matched value: findings are
 * offsets into the caller's text, so they can be logged, audited and sent across trust boundaries.
 */

export const ENTITY_TYPES = [
  'CREDIT_CARD',
  'IBAN',
  'US_SSN',
  'EMAIL',
  'PHONE',
  'IP_ADDRESS',
  'IN_AADHAAR',
  'IN_PAN',
  'UK_NHS',
  'UK_NINO',
  'CRYPTO_ADDRESS',
  'SECRET',
  'PRIVATE_KEY',
] as const;

export type EntityType = (typeof ENTITY_TYPES)[number];

/**
 * How a candidate was accepted. `checksum`: a check digit or hash verified, so a random string passes only
 * by chance (1 in 10 for Luhn/Verhoeff, 2^-32 for Base58Check). `structure`: format rules only (SSN ranges,
 * PAN holder type, IP syntax, a library's numbering plan). `heuristic`: pattern, entropy or context.
 */
export type ValidationStrength = 'checksum' | 'structure' | 'heuristic';

export interface Validation {
  /** The check that accepted the candidate, e.g. `luhn`, `iban-mod97`, `verhoeff`, `eip55`. */
  readonly method: string;
  readonly strength: ValidationStrength;
  /** A non-identifying qualifier: card brand, IBAN country, phone numbering form, secret kind. */
  readonly detail?: string;
}

export interface Finding {
  /** Id of the detector that produced the finding. */
  readonly detector: string;
  readonly entity: EntityType;
  /** UTF-16 index of the first code unit. */
  readonly start: number;
  /** UTF-16 index one past the last code unit. */
  readonly end: number;
  /** 0..1. Detectors report a base confidence; the engine adjusts it for context words. */
  readonly confidence: number;
  readonly validation: Validation;
}

/**
 * A detector for one entity type. Streaming relies on a contract every detector keeps:
 *
 * - Scan order: `find(text, from)` reports what a leftmost-first scan starting at `from` finds. An attempt
 *   at index i either yields a finding that starts at i, and the scan resumes at its end, or fails, and the
 *   scan resumes at i + 1. A candidate that fails validation does not consume text.
 * - Locality: the outcome of an attempt at i depends only on text[i - MAX_LOOKBEHIND, i + maxLength).
 * - `pendingFrom(text)` is the smallest index whose attempt might still change if text were appended to;
 *   it is never below `text.length - maxLength`.
 */
export interface Detector {
  readonly id: string;
  readonly entity: EntityType;
  /** Upper bound, in UTF-16 code units, on what an attempt examines past its start (lookahead included). */
  readonly maxLength: number;
  find(text: string, from?: number): Finding[];
  pendingFrom(text: string): number;
  /**
   * Canonical spelling of a matched value, so that differently formatted copies of one value (a phone
   * number with and without its country code) get the same pseudonym. Defaults to a per-entity rule.
   */
  canonical?(value: string): string;
}

export const SCOPES = ['principal', 'network', 'organisation'] as const;
export type Scope = (typeof SCOPES)[number];

/** Ordered from least to most severe; the monitor returns the most severe that applies. */
export const ACTIONS = ['none', 'alert', 'throttle', 'step-up', 'block'] as const;
export type Action = (typeof ACTIONS)[number];

export const DETECTORS = [
  'prada',
  'burst',
  'near-duplicate',
  'boundary',
  'coverage',
  'off-hours',
  'malformed',
] as const;
export type DetectorName = (typeof DETECTORS)[number];

export interface Observation {
  /** Stable identifier of the authenticated caller. */
  readonly principal: string;
  /** The source network the gateway aggregates on (e.g. the /24 or /48 of the client address). */
  readonly network: string;
  readonly organisation?: string;
  /** Epoch milliseconds. */
  readonly at: number;
  /** The input of a numeric-feature model. */
  readonly features?: readonly number[];
  /** The prompt of a language model. */
  readonly text?: string;
  /** The model's predicted label for this input, when the gateway knows it. */
  readonly outputLabel?: string;
}

export interface Verdict {
  readonly detector: string;
  /** Severity: 1 is the detector's configured threshold for this scope, higher is worse. */
  readonly score: number;
  /** Human-readable and free of the query's content. */
  readonly reason: string;
  readonly scope: Scope;
}

export interface ObserveResult {
  readonly verdicts: readonly Verdict[];
  readonly action: Action;
}

export interface PradaParams {
  /** Alarm when the Shapiro–Wilk W of the distance set falls below this. */
  readonly delta: number;
  /** Distances needed before testing (the paper's minimum of 100 queries). */
  readonly minQueries: number;
  /** The distance set is a sliding window of this many most recent minimum distances. */
  readonly maxDistances: number;
  /** Cap on growing-set points per class; reservoir replacement beyond it. */
  readonly maxGrowingSet: number;
  /** Predicted classes tracked per scope; the rest share one overflow class. */
  readonly maxClasses: number;
}

export interface BurstParams {
  /** Time constant of the short-term rate estimate. */
  readonly shortWindowMs: number;
  /** Time constant of the baseline rate estimate. */
  readonly baselineWindowMs: number;
  /** Short-term rate (per minute) always tolerated, whatever the baseline. */
  readonly floorPerMinute: number;
  /** Short-term rate tolerated as a multiple of the baseline rate. */
  readonly ratio: number;
}

export interface NearDuplicateParams {
  /** Feature vectors within this Euclidean distance (in standardised units) are near-duplicates. */
  readonly featureRadius: number;
  /** Prompts whose 64-bit SimHashes differ in at most this many bits are near-duplicates. */
  readonly textBits: number;
  /** Queries needed in the fraction window before the detector may fire. */
  readonly minQueries: number;
  /** The fraction is over this many most recent queries. */
  readonly fractionWindow: number;
  /** Fire when the near-duplicate fraction exceeds this. */
  readonly maxFraction: number;
}

export interface BoundaryParams {
  /** Nearest earlier neighbour within this distance (standardised units) counts as "near". */
  readonly featureRadius: number;
  /** SimHash distance (bits) under which two prompts are neighbours. */
  readonly textBits: number;
  readonly minQueries: number;
  readonly fractionWindow: number;
  /** Fire when the fraction of queries whose near neighbour has another label exceeds this. */
  readonly maxFraction: number;
}

export interface CoverageParams {
  /** Width of a quantisation cell per standardised feature. */
  readonly binWidth: number;
  /** Standardised values are clamped to ±clamp before quantisation (outer cells absorb the tails). */
  readonly clamp: number;
  /** Distinct feature cells tolerated within the horizon. */
  readonly featureCellBudget: number;
  /** Distinct prompt terms tolerated within the horizon. */
  readonly textTermBudget: number;
  /** Cells and terms not seen for this long stop counting. */
  readonly horizonMs: number;
}

export interface OffHoursParams {
  /** Queries outside business hours tolerated per `windowMs` (exponentially decayed count). */
  readonly allowance: number;
  readonly windowMs: number;
}

export interface DetectorParams {
  readonly prada: PradaParams;
  readonly burst: BurstParams;
  readonly 'near-duplicate': NearDuplicateParams;
  readonly boundary: BoundaryParams;
  readonly coverage: CoverageParams;
  readonly 'off-hours': OffHoursParams;
}
export type ConfigurableDetector = keyof DetectorParams;

/** Parameters of one detector with optional per-scope overrides. */
export type DetectorSetting<P> = Partial<P> & {
  readonly enabled?: boolean;
  readonly scopes?: { readonly [S in Scope]?: Partial<P> & { readonly enabled?: boolean } };
};

export interface BusinessHours {
  /** IANA time zone, e.g. 'Europe/Berlin'. */
  readonly timeZone: string;
  /** ISO weekdays that are working days, 1 = Monday … 7 = Sunday. Default Monday to Friday. */
  readonly days?: readonly number[];
  /** 'HH:MM' local start (inclusive) and end (exclusive); end before start spans midnight. */
  readonly start: string;
  readonly end: string;
  /** Organisation-specific time zones; the organisation's own hours replace `timeZone` for its members. */
  readonly organisationTimeZones?: Readonly<Record<string, string>>;
}

export interface PolicyRule {
  /** Detector this rule applies to; omitted or '*' means any. */
  readonly detector?: DetectorName | '*';
  /** Scope this rule applies to; omitted means any. */
  readonly scope?: Scope;
  /** Minimum verdict score (>= 1, the detector threshold). Default 1. */
  readonly minScore?: number;
  /** Minimum number of distinct detectors firing in the same scope. Default 1. */
  readonly minDetectors?: number;
  readonly action: Exclude<Action, 'none'>;
}

export interface ExtractionPolicy {
  readonly rules: readonly PolicyRule[];
  /** A scope that drew an action keeps at least that action for this long. Default 10 minutes. */
  readonly holdMs?: number;
}

export interface ExtractionOptions {
  /** Per-feature standardisation (z = (x − mean) / scale). Fixes the expected dimensionality when given. */
  readonly features?: { readonly mean: readonly number[]; readonly scale: readonly number[] };
  readonly detectors?: { readonly [D in ConfigurableDetector]?: DetectorSetting<DetectorParams[D]> };
  /** Enables the off-hours detector. */
  readonly businessHours?: BusinessHours;
  readonly policy?: ExtractionPolicy;
  /** Scope keys tracked at once, least recently used evicted first. */
  readonly caps?: {
    readonly principals?: number;
    readonly networks?: number;
    readonly organisations?: number;
  };
  /** Recent queries kept per scope for neighbour search (near-duplicates and boundary probing). */
  readonly neighbourWindow?: number;
  /** Longest prompt prefix (in words) that is analysed. */
  readonly maxTextWords?: number;
  /** Largest feature vector analysed. */
  readonly maxFeatureDims?: number;
  /** Seed of the reservoir sampling, for reproducible decisions. */
  readonly seed?: number;
}

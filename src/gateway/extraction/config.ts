import {
  ACTIONS,
  DETECTORS,
  SCOPES,
  type Action,
  type BusinessHours,
  type ConfigurableDetector,
  type DetectorName,
  type DetectorParams,
  type ExtractionOptions,
  type PolicyRule,
  type Scope,
} from './types.ts';

/** Invalid monitor configuration; `code` is stable, the message names the offending option. */
export class ExtractionConfigError extends Error {
  readonly code = 'invalid_extraction_option';
  constructor(message: string) {
    super(message);
    this.name = 'ExtractionConfigError';
  }
}

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;

/**
 * Defaults calibrated with the evaluation harness (docs/extraction-detection.md): the aggregate scopes see
 * the summed traffic of many benign users, so their volume thresholds are higher.
 */
export const DEFAULT_PARAMS: { readonly [S in Scope]: DetectorParams } = {
  principal: scopeDefaults({
    floorPerMinute: 20,
    featureCellBudget: 150,
    textTermBudget: 1000,
    allowance: 30,
  }),
  network: scopeDefaults({ floorPerMinute: 40, featureCellBudget: 400, textTermBudget: 3000, allowance: 60 }),
  organisation: scopeDefaults({
    floorPerMinute: 60,
    featureCellBudget: 1000,
    textTermBudget: 6000,
    allowance: 100,
  }),
};

/** The defaults of one scope: the same everywhere but for the volume thresholds. */
function scopeDefaults(volume: {
  floorPerMinute: number;
  featureCellBudget: number;
  textTermBudget: number;
  allowance: number;
}): DetectorParams {
  return {
    prada: { delta: 0.87, minQueries: 100, maxDistances: 1000, maxGrowingSet: 128, maxClasses: 8 },
    burst: {
      shortWindowMs: MINUTE,
      baselineWindowMs: 6 * HOUR,
      floorPerMinute: volume.floorPerMinute,
      ratio: 5,
    },
    'near-duplicate': {
      featureRadius: 0.05,
      textBits: 8,
      minQueries: 40,
      fractionWindow: 100,
      maxFraction: 0.2,
    },
    boundary: { featureRadius: 0.5, textBits: 10, minQueries: 40, fractionWindow: 100, maxFraction: 0.15 },
    coverage: {
      binWidth: 1,
      clamp: 3,
      featureCellBudget: volume.featureCellBudget,
      textTermBudget: volume.textTermBudget,
      horizonMs: 24 * HOUR,
    },
    'off-hours': { allowance: volume.allowance, windowMs: HOUR },
  };
}

/**
 * Detectors off by default in a scope. PRADA per organisation: an organisation's traffic is the mixture of
 * many users' query distributions, whose minimum-distance set is not normal even when every user is benign
 * (measured: W down to 0.886 for 30 benign users, which an extraction attack also reaches).
 */
export const DEFAULT_DISABLED: { readonly [S in Scope]: readonly ConfigurableDetector[] } = {
  principal: [],
  network: [],
  organisation: ['prada'],
};

export const DEFAULT_POLICY: readonly PolicyRule[] = [
  { action: 'alert' },
  { detector: 'burst', minScore: 2, action: 'throttle' },
  { minDetectors: 2, action: 'step-up' },
  { minDetectors: 3, action: 'block' },
  // Fail closed on input the detectors cannot analyse.
  { detector: 'malformed', action: 'block' },
];

export const DEFAULT_CAPS = { principals: 10_000, networks: 2_000, organisations: 1_000 } as const;

export interface ResolvedConfig {
  /** Null when the detector is disabled in that scope. */
  readonly params: {
    readonly [S in Scope]: { readonly [D in ConfigurableDetector]: DetectorParams[D] | null };
  };
  readonly mean: Float64Array | null;
  readonly scale: Float64Array | null;
  readonly businessHours: ResolvedHours | null;
  readonly rules: readonly ResolvedRule[];
  readonly holdMs: number;
  readonly caps: { readonly [S in Scope]: number };
  readonly neighbourWindow: number;
  readonly maxTextWords: number;
  readonly maxFeatureDims: number;
  readonly seed: number;
}

export interface ResolvedRule {
  readonly detector: DetectorName | '*';
  readonly scope: Scope | undefined;
  readonly minScore: number;
  readonly minDetectors: number;
  readonly action: Exclude<Action, 'none'>;
}

export interface ResolvedHours {
  readonly timeZone: string;
  readonly days: ReadonlySet<number>;
  /** Minutes after local midnight. */
  readonly start: number;
  readonly end: number;
  readonly organisationTimeZones: ReadonlyMap<string, string>;
}

function fail(message: string): never {
  throw new ExtractionConfigError(message);
}

/**
 * Refuses options `value` does not know, as the configuration files do (`unknownSetting`), but with this
 * library API's own error and option paths (rules and per-detector scopes are not fixed sections). Shapes are
 * checked where each option is read.
 */
function onlyKnown(value: unknown, known: readonly string[], where: string): void {
  if (value === undefined || value === null || typeof value !== 'object') return;
  const unknown = Object.keys(value).find((key) => !known.includes(key));
  if (unknown !== undefined) fail(`${where}${unknown} is not a known option (known: ${known.join(', ')})`);
}

const OPTION_NAMES = [
  'features',
  'detectors',
  'businessHours',
  'policy',
  'caps',
  'neighbourWindow',
  'maxTextWords',
  'maxFeatureDims',
  'seed',
] as const satisfies readonly (keyof ExtractionOptions)[];

function positiveInt(value: number | undefined, fallback: number, name: string, max = 1_000_000_000): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value < 1 || value > max) fail(`${name} must be an integer in [1, ${max}]`);
  return value;
}

/** The near-duplicate and boundary detectors count queries in a neighbourhood alike: same parameters. */
const NEIGHBOURHOOD_RANGES = {
  featureRadius: [0, 1e9, false],
  textBits: [0, 64, true],
  minQueries: [1, 100_000, true],
  fractionWindow: [1, 100_000, true],
  maxFraction: [0, 1, false],
} as const;

/** Which numeric parameters must be integers, and the valid range of every parameter. */
const RANGES: {
  readonly [D in ConfigurableDetector]: {
    readonly [K in keyof DetectorParams[D]]: readonly [number, number, boolean];
  };
} = {
  prada: {
    delta: [0, 1, false],
    minQueries: [3, 5000, true],
    maxDistances: [3, 5000, true],
    maxGrowingSet: [1, 100_000, true],
    maxClasses: [1, 10_000, true],
  },
  burst: {
    shortWindowMs: [1, 1e12, false],
    baselineWindowMs: [1, 1e12, false],
    floorPerMinute: [0, 1e9, false],
    ratio: [1, 1e9, false],
  },
  'near-duplicate': NEIGHBOURHOOD_RANGES,
  boundary: NEIGHBOURHOOD_RANGES,
  coverage: {
    binWidth: [1e-9, 1e9, false],
    clamp: [1e-9, 1e9, false],
    featureCellBudget: [1, 1_000_000, true],
    textTermBudget: [1, 1_000_000, true],
    horizonMs: [1, 1e13, false],
  },
  'off-hours': { allowance: [1, 1e9, false], windowMs: [1, 1e12, false] },
};

function resolveDetector<D extends ConfigurableDetector>(
  detector: D,
  scope: Scope,
  options: ExtractionOptions,
): DetectorParams[D] | null {
  const setting = options.detectors?.[detector];
  const override = setting?.scopes?.[scope];
  const enabled = override?.enabled ?? setting?.enabled ?? !DEFAULT_DISABLED[scope].includes(detector);
  if (detector === 'off-hours' && options.businessHours === undefined) return null;
  const merged: Record<string, unknown> = { ...DEFAULT_PARAMS[scope][detector] };
  const ranges = RANGES[detector] as Record<string, readonly [number, number, boolean]>;
  for (const source of [setting, override]) {
    if (source === undefined) continue;
    for (const [key, value] of Object.entries(source)) {
      if (key === 'enabled' || key === 'scopes') continue;
      const range = ranges[key];
      if (range === undefined) fail(`detectors.${detector}.${key} is not a known parameter`);
      if (typeof value !== 'number' || !Number.isFinite(value) || value < range[0] || value > range[1]) {
        fail(`detectors.${detector}.${key} must be a number in [${range[0]}, ${range[1]}]`);
      }
      if (range[2] && !Number.isInteger(value)) fail(`detectors.${detector}.${key} must be an integer`);
      merged[key] = value;
    }
  }
  if (typeof enabled !== 'boolean') fail(`detectors.${detector}.enabled must be a boolean`);
  if (!enabled) return null;
  if (detector === 'prada' && (merged.minQueries as number) > (merged.maxDistances as number)) {
    fail('detectors.prada.minQueries must not exceed maxDistances');
  }
  return merged as unknown as DetectorParams[D];
}

function parseClock(value: string, name: string): number {
  const m = /^([01]\d|2[0-3]):([0-5]\d)$/.exec(value);
  if (m === null) fail(`${name} must be HH:MM`);
  return Number(m[1]) * 60 + Number(m[2]);
}

function checkTimeZone(zone: string, name: string): string {
  try {
    return new Intl.DateTimeFormat('en-US', { timeZone: zone }).resolvedOptions().timeZone;
  } catch {
    return fail(`${name} is not a known time zone`);
  }
}

function resolveHours(hours: BusinessHours): ResolvedHours {
  onlyKnown(hours, ['timeZone', 'days', 'start', 'end', 'organisationTimeZones'], 'businessHours.');
  const days = hours.days ?? [1, 2, 3, 4, 5];
  for (const d of days) if (!Number.isInteger(d) || d < 1 || d > 7) fail('businessHours.days must be 1..7');
  const zones = new Map<string, string>();
  for (const [org, zone] of Object.entries(hours.organisationTimeZones ?? {})) {
    zones.set(org, checkTimeZone(zone, 'businessHours.organisationTimeZones'));
  }
  const start = parseClock(hours.start, 'businessHours.start');
  const end = parseClock(hours.end, 'businessHours.end');
  if (start === end) fail('businessHours.start and end must differ');
  return {
    timeZone: checkTimeZone(hours.timeZone, 'businessHours.timeZone'),
    days: new Set(days),
    start,
    end,
    organisationTimeZones: zones,
  };
}

function resolveRule(rule: PolicyRule, index: number): ResolvedRule {
  const name = `policy.rules[${index}]`;
  onlyKnown(rule, ['detector', 'scope', 'minScore', 'minDetectors', 'action'], `${name}.`);
  if (!ACTIONS.includes(rule.action) || rule.action === ('none' as Action))
    fail(`${name}.action is not valid`);
  const detector = rule.detector ?? '*';
  if (detector !== '*' && !DETECTORS.includes(detector)) fail(`${name}.detector is not a known detector`);
  if (rule.scope !== undefined && !SCOPES.includes(rule.scope)) fail(`${name}.scope is not a known scope`);
  const minScore = rule.minScore ?? 1;
  if (!Number.isFinite(minScore) || minScore < 1) fail(`${name}.minScore must be a number >= 1`);
  const minDetectors = positiveInt(rule.minDetectors, 1, `${name}.minDetectors`, DETECTORS.length);
  return { detector, scope: rule.scope, minScore, minDetectors, action: rule.action };
}

function vector(values: readonly number[], name: string, positive: boolean): Float64Array {
  const out = Float64Array.from(values);
  for (const v of out) {
    if (!Number.isFinite(v) || (positive && v <= 0))
      fail(`${name} must hold finite${positive ? ' positive' : ''} numbers`);
  }
  return out;
}

export function resolveConfig(options: ExtractionOptions): ResolvedConfig {
  onlyKnown(options, OPTION_NAMES, '');
  onlyKnown(options.features, ['mean', 'scale'], 'features.');
  onlyKnown(options.policy, ['rules', 'holdMs'], 'policy.');
  onlyKnown(options.caps, ['principals', 'networks', 'organisations'], 'caps.');
  for (const [detector, setting] of Object.entries(options.detectors ?? {}) as [string, unknown][]) {
    onlyKnown((setting as { scopes?: unknown } | null)?.scopes, SCOPES, `detectors.${detector}.scopes.`);
  }
  const maxFeatureDims = positiveInt(options.maxFeatureDims, 1024, 'maxFeatureDims', 100_000);
  let mean: Float64Array | null = null;
  let scale: Float64Array | null = null;
  if (options.features !== undefined) {
    mean = vector(options.features.mean, 'features.mean', false);
    scale = vector(options.features.scale, 'features.scale', true);
    if (mean.length !== scale.length || mean.length === 0 || mean.length > maxFeatureDims) {
      fail('features.mean and features.scale must have the same, non-zero length within maxFeatureDims');
    }
  }
  for (const key of Object.keys(options.detectors ?? {})) {
    if (!(key in RANGES)) fail(`detectors.${key} is not a configurable detector`);
  }
  const perScope = (scope: Scope): ResolvedConfig['params'][Scope] => ({
    prada: resolveDetector('prada', scope, options),
    burst: resolveDetector('burst', scope, options),
    'near-duplicate': resolveDetector('near-duplicate', scope, options),
    boundary: resolveDetector('boundary', scope, options),
    coverage: resolveDetector('coverage', scope, options),
    'off-hours': resolveDetector('off-hours', scope, options),
  });
  const holdMs = options.policy?.holdMs ?? 10 * MINUTE;
  if (!Number.isFinite(holdMs) || holdMs < 0) fail('policy.holdMs must be a non-negative number');
  const seed = options.seed ?? 0x5eed;
  if (!Number.isInteger(seed)) fail('seed must be an integer');
  return {
    params: {
      principal: perScope('principal'),
      network: perScope('network'),
      organisation: perScope('organisation'),
    },
    mean,
    scale,
    businessHours: options.businessHours === undefined ? null : resolveHours(options.businessHours),
    rules: (options.policy?.rules ?? DEFAULT_POLICY).map(resolveRule),
    holdMs,
    caps: {
      principal: positiveInt(options.caps?.principals, DEFAULT_CAPS.principals, 'caps.principals'),
      network: positiveInt(options.caps?.networks, DEFAULT_CAPS.networks, 'caps.networks'),
      organisation: positiveInt(
        options.caps?.organisations,
        DEFAULT_CAPS.organisations,
        'caps.organisations',
      ),
    },
    neighbourWindow: positiveInt(options.neighbourWindow, 128, 'neighbourWindow', 100_000),
    maxTextWords: positiveInt(options.maxTextWords, 512, 'maxTextWords', 1_000_000),
    maxFeatureDims,
    seed,
  };
}

/**
 * Evaluation harness for the extraction monitor: a small credit-scoring model, a text (LLM) endpoint, benign
 * traffic from many users with natural query distributions, and simulated extraction attacks. Everything is
 * seeded, so a run is reproducible. Used by the tests (small configurations) and by evaluate.ts (the figures
 * in docs/extraction-detection.md).
 */
import {
  ExtractionMonitor,
  type ExtractionOptions,
  type Observation,
  type Action,
} from '../../../src/gateway/extraction/index.ts';

// ---------------------------------------------------------------- randomness

export class Rng {
  #s: number;
  constructor(seed: number) {
    this.#s = seed >>> 0;
  }
  next(): number {
    this.#s = (this.#s + 0x6d2b79f5) >>> 0;
    let t = this.#s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  uniform(a: number, b: number): number {
    return a + (b - a) * this.next();
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  normal(mean = 0, sd = 1): number {
    const u = 1 - this.next();
    const v = this.next();
    return mean + sd * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  }
  poisson(lambda: number): number {
    if (lambda > 30) return Math.max(0, Math.round(this.normal(lambda, Math.sqrt(lambda))));
    const l = Math.exp(-lambda);
    let k = 0;
    let p = 1;
    do {
      k++;
      p *= this.next();
    } while (p > l);
    return k - 1;
  }
  exponential(mean: number): number {
    return -mean * Math.log(1 - this.next());
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }
  /** Zipf-like pick: rank r with weight 1/(r+1). */
  zipf<T>(items: readonly T[]): T {
    const h = Math.log(items.length + 1);
    const r = Math.floor(Math.exp(this.next() * h)) - 1;
    return items[Math.min(items.length - 1, Math.max(0, r))]!;
  }
}

// ---------------------------------------------------------------- the credit-scoring model

export const FEATURES = [
  'age',
  'income_keur',
  'debt_ratio',
  'history_years',
  'open_accounts',
  'delinquencies',
] as const;

/** A plausible applicant population: correlated, skewed, partly integer-valued. */
export function sampleApplicant(rng: Rng): number[] {
  const age = Math.min(85, Math.max(18, rng.normal(41, 12)));
  const income = Math.exp(rng.normal(Math.log(38) + 0.012 * (age - 41), 0.45));
  const debt = Math.min(1.2, Math.max(0, rng.normal(0.33 - 0.001 * (income - 40), 0.12)));
  const history = Math.max(0, Math.min(age - 18, rng.normal((age - 18) * 0.6, 4)));
  const accounts = rng.poisson(2 + history / 6);
  const delinquencies = rng.poisson(Math.max(0.05, 0.5 + 1.2 * (debt - 0.33)));
  return [age, income, debt, history, accounts, delinquencies];
}

/** Standardisation of the population (measured once with a fixed seed), given to the monitor. */
export const FEATURE_STATS: { mean: number[]; scale: number[] } = (() => {
  const rng = new Rng(12345);
  const n = 20_000;
  const sum = new Array<number>(6).fill(0);
  const sq = new Array<number>(6).fill(0);
  for (let i = 0; i < n; i++) {
    const x = sampleApplicant(rng);
    for (let j = 0; j < 6; j++) {
      sum[j]! += x[j]!;
      sq[j]! += x[j]! * x[j]!;
    }
  }
  const mean = sum.map((s) => s / n);
  return { mean, scale: sq.map((s, j) => Math.sqrt(s / n - mean[j]! ** 2)) };
})();

const WEIGHTS = [0.3, 1.2, -1.5, 0.6, -0.2, -1.0];
const BIAS = 0.4;

/** The protected model: logistic regression over standardised features. */
export function creditModel(x: readonly number[]): 'approve' | 'deny' {
  let s = BIAS;
  for (let j = 0; j < 6; j++) s += WEIGHTS[j]! * ((x[j]! - FEATURE_STATS.mean[j]!) / FEATURE_STATS.scale[j]!);
  return s >= 0 ? 'approve' : 'deny';
}

/** Plausible value ranges an attacker can guess from public knowledge of the domain. */
const BOX: readonly (readonly [number, number])[] = [
  [18, 85],
  [5, 200],
  [0, 1.2],
  [0, 50],
  [0, 20],
  [0, 6],
];

// ---------------------------------------------------------------- time

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
/** Monday 2025-03-03 00:00 in Europe/Berlin (UTC+1 until the end of March). */
export const WEEK_START = Date.UTC(2025, 2, 3) - HOUR;
export const BUSINESS_HOURS = { timeZone: 'Europe/Berlin', start: '07:00', end: '20:00' } as const;

// ---------------------------------------------------------------- text

const FUNCTION_WORDS = [
  'the',
  'a',
  'for',
  'of',
  'to',
  'and',
  'in',
  'with',
  'our',
  'this',
  'about',
  'on',
  'my',
  'please',
];
const VERBS = [
  'write',
  'summarise',
  'rewrite',
  'draft',
  'explain',
  'translate',
  'improve',
  'shorten',
  'check',
  'list',
];
const DOMAINS: readonly (readonly string[])[] = [
  'customer refund order delivery invoice complaint email reply apology shipping tracking account password subscription cancel discount voucher parcel warehouse courier return exchange damaged late missing address payment card bank transfer receipt'.split(
    ' ',
  ),
  'function typescript error stack trace null pointer test unit mock database query index migration schema api endpoint request response json parse async promise await loop array map filter reduce class interface type generic compile build deploy docker'.split(
    ' ',
  ),
  'contract clause liability indemnity warranty termination notice party agreement breach damages jurisdiction arbitration confidentiality license intellectual property term renewal amendment signature obligation compliance regulation gdpr consent processor controller'.split(
    ' ',
  ),
  'campaign audience brand slogan newsletter social post engagement conversion funnel landing page headline copy tone launch product feature benefit customer persona segment budget channel metrics seo keyword blog video'.split(
    ' ',
  ),
  'candidate interview job description salary benefits onboarding review feedback performance goal promotion team manager policy leave holiday remote hybrid training mentor hiring offer letter reference skills culture'.split(
    ' ',
  ),
];

function benignPrompt(rng: Rng, vocabulary: readonly string[]): string {
  const words = [rng.pick(VERBS)];
  const n = 6 + rng.int(25);
  for (let i = 0; i < n; i++) words.push(rng.next() < 0.35 ? rng.pick(FUNCTION_WORDS) : rng.zipf(vocabulary));
  return words.join(' ');
}

function mutatePrompt(rng: Rng, prompt: string, vocabulary: readonly string[]): string {
  const words = prompt.split(' ');
  words[1 + rng.int(words.length - 1)] = rng.zipf(vocabulary);
  return words.join(' ');
}

const BROAD_VOCABULARY: readonly string[] = (() => {
  const syllables = [
    'ka',
    'lo',
    'mi',
    'ne',
    'ru',
    'sa',
    'ti',
    'vo',
    'ze',
    'pa',
    'do',
    'gu',
    'he',
    'ji',
    'bo',
  ];
  const out = new Set<string>(DOMAINS.flat());
  const rng = new Rng(777);
  while (out.size < 3000) out.add(rng.pick(syllables) + rng.pick(syllables) + rng.pick(syllables));
  return [...out];
})();

// ---------------------------------------------------------------- traffic

export interface TrafficEvent {
  readonly observation: Observation;
  /** The benign user or attack instance this query belongs to. */
  readonly actor: string;
  readonly attack: string | null;
}

export interface BenignConfig {
  readonly users: number;
  readonly days: number;
  /** Users per office network and per organisation. */
  readonly usersPerNetwork: number;
  readonly usersPerOrganisation: number;
  readonly text: boolean;
}

/**
 * Benign users: working-day sessions in business hours (a few work late or at weekends), per-user daily
 * volume log-normal (median ~15, heavy tail), applicants drawn from the population, and now and then a
 * what-if re-query of the same applicant with one value changed (a real source of near-duplicates and label
 * flips). Text users write prompts in their own domain and sometimes retry with one word changed.
 */
export function benignTraffic(rng: Rng, cfg: BenignConfig): TrafficEvent[] {
  const events: TrafficEvent[] = [];
  for (let u = 0; u < cfg.users; u++) {
    const actor = `user-${u}`;
    const network = `10.${Math.floor(u / cfg.usersPerNetwork) % 256}.${Math.floor(u / cfg.usersPerNetwork / 256)}.0/24`;
    const organisation = `org-${Math.floor(u / cfg.usersPerOrganisation)}`;
    const perDay = Math.exp(rng.normal(Math.log(15), 0.8));
    const lateWorker = rng.next() < 0.1;
    const weekendWorker = rng.next() < 0.05;
    const vocabulary = DOMAINS[u % DOMAINS.length]!;
    for (let d = 0; d < cfg.days; d++) {
      const weekday = d % 7;
      if (weekday >= 5 && !weekendWorker) continue;
      let remaining = rng.poisson(weekday >= 5 ? perDay / 4 : perDay);
      while (remaining > 0) {
        const dayEnd = lateWorker ? 21.5 : 18;
        let t = WEEK_START + d * DAY + rng.uniform(8, dayEnd) * HOUR;
        const session = Math.min(remaining, 1 + rng.poisson(4));
        remaining -= session;
        let applicant = sampleApplicant(rng);
        let prompt = benignPrompt(rng, vocabulary);
        for (let q = 0; q < session; q++) {
          t += rng.exponential(45_000);
          const base = { principal: actor, network, organisation, at: Math.round(t) };
          if (cfg.text) {
            events.push({ observation: { ...base, text: prompt }, actor, attack: null });
            prompt = rng.next() < 0.1 ? mutatePrompt(rng, prompt, vocabulary) : benignPrompt(rng, vocabulary);
          } else {
            events.push({
              observation: { ...base, features: applicant, outputLabel: creditModel(applicant) },
              actor,
              attack: null,
            });
            if (rng.next() < 0.1) {
              applicant = [...applicant];
              const j = rng.pick([1, 2, 4]);
              applicant[j] = j === 4 ? applicant[j]! + 1 : applicant[j]! * rng.uniform(0.85, 1.15);
            } else {
              applicant = sampleApplicant(rng);
            }
          }
        }
      }
    }
  }
  return events;
}

/** A stream of attack inputs; `label` is the oracle the attacker queries (the model). */
type QueryGenerator = (rng: Rng, oracle: (x: readonly number[]) => string) => number[][];

function clampToBox(x: number[]): number[] {
  return x.map((v, j) => Math.min(BOX[j]![1], Math.max(BOX[j]![0], v)));
}

/**
 * Papernot et al. (AsiaCCS 2017) Jacobian-based dataset augmentation. A substitute network (6-16-1, tanh) is
 * trained on the labelled set; each round adds x + λ·sign(∂p_sub(label(x))/∂x) for every x in the set (λ in
 * units of each feature's scale, its sign alternating every τ rounds), so the set doubles per round. Starts
 * from a handful of real applicants; inputs already queried are not queried again.
 */
export const papernot: QueryGenerator = (rng, oracle) => {
  const seeds = 10;
  const rounds = 7;
  const lambda = 0.1;
  const tau = 3;
  const hidden = 16;
  const scale = FEATURE_STATS.scale;
  const zOf = (x: readonly number[]): number[] => x.map((v, j) => (v - FEATURE_STATS.mean[j]!) / scale[j]!);
  const w1 = Array.from({ length: hidden }, () => Array.from({ length: 6 }, () => rng.normal(0, 0.5)));
  const b1 = new Array<number>(hidden).fill(0);
  const w2 = Array.from({ length: hidden }, () => rng.normal(0, 0.5));
  let b2 = 0;
  const forward = (z: readonly number[]): { h: number[]; p: number } => {
    const h = w1.map((row, k) => Math.tanh(row.reduce((s, w, j) => s + w * z[j]!, b1[k]!)));
    const s = h.reduce((acc, v, k) => acc + v * w2[k]!, b2);
    return { h, p: 1 / (1 + Math.exp(-s)) };
  };
  let set: number[][] = [];
  for (let i = 0; i < seeds; i++) set.push(sampleApplicant(rng));
  const seen = new Set<string>();
  const queries: number[][] = [];
  const labels: number[] = [];
  const ask = (x: number[]): void => {
    const key = x.map((v) => v.toPrecision(12)).join(',');
    if (seen.has(key)) return;
    seen.add(key);
    queries.push(x);
    labels.push(oracle(x) === 'approve' ? 1 : 0);
  };
  set.forEach(ask);
  for (let r = 0; r < rounds; r++) {
    for (let epoch = 0; epoch < 30; epoch++) {
      for (let i = 0; i < queries.length; i++) {
        const z = zOf(queries[i]!);
        const { h, p } = forward(z);
        const g = p - labels[i]!;
        for (let k = 0; k < hidden; k++) {
          const gh = g * w2[k]! * (1 - h[k]! ** 2);
          w2[k]! -= 0.05 * g * h[k]!;
          for (let j = 0; j < 6; j++) w1[k]![j]! -= 0.05 * gh * z[j]!;
          b1[k]! -= 0.05 * gh;
        }
        b2 -= 0.05 * g;
      }
    }
    const step = lambda * (Math.floor(r / tau) % 2 === 0 ? 1 : -1);
    const next = set.map((x) => {
      const z = zOf(x);
      const { h, p } = forward(z);
      const own = oracle(x) === 'approve' ? 1 : -1;
      return clampToBox(
        x.map((v, j) => {
          let grad = 0;
          for (let k = 0; k < hidden; k++) grad += w2[k]! * (1 - h[k]! ** 2) * w1[k]![j]!;
          return v + step * own * Math.sign(grad * p * (1 - p)) * scale[j]!;
        }),
      );
    });
    next.forEach(ask);
    set = set.concat(next);
  }
  return queries;
};

/** Tramèr et al. (USENIX Security 2016): uniformly random queries over the plausible input box. */
export const tramerUniform: QueryGenerator = (rng) => {
  const out: number[][] = [];
  for (let i = 0; i < 1000; i++) out.push(BOX.map(([a, b]) => rng.uniform(a, b)));
  return out;
};

/**
 * Tramèr et al.'s label-only line search (after Lowd and Meek): take pairs of random points with different
 * labels and bisect the segment between them down to a tolerance, collecting boundary points from which
 * the linear model is solved.
 */
export const tramerLineSearch: QueryGenerator = (rng, oracle) => {
  const out: number[][] = [];
  const random = (): number[] => BOX.map(([a, b]) => rng.uniform(a, b));
  while (out.length < 1000) {
    const a = random();
    const b = random();
    out.push(a, b);
    const la = oracle(a);
    if (la === oracle(b)) continue;
    let lo = a;
    let hi = b;
    for (let step = 0; step < 20; step++) {
      const mid = lo.map((v, j) => (v + hi[j]!) / 2);
      out.push(mid);
      if (oracle(mid) === la) lo = mid;
      else hi = mid;
    }
  }
  return out;
};

export interface AttackSpec {
  readonly name: string;
  readonly generate: QueryGenerator | ((rng: Rng) => string[]);
  readonly kind: 'features' | 'text';
  /** Accounts the queries are spread over (round robin), all in one /24. */
  readonly accounts: number;
  /** 'fast': automated at ~1 query/s at any hour; 'stealthy': one query every 30–90 s, business hours only. */
  readonly pace: 'fast' | 'stealthy';
}

/** LLM distillation with templated prompts sweeping topics, the way instruction datasets are generated. */
export const templatedDistillation = (rng: Rng): string[] => {
  const templates = [
    'explain {t} to a {a} in {n} sentences',
    'write a short answer about {t} for a {a}',
    'what are the main facts about {t} that a {a} should know',
  ];
  const audiences = ['child', 'student', 'expert', 'manager', 'beginner'];
  const out: string[] = [];
  for (let i = 0; i < 800; i++) {
    out.push(
      rng
        .pick(templates)
        .replace('{t}', `${rng.pick(BROAD_VOCABULARY)} ${rng.pick(BROAD_VOCABULARY)}`)
        .replace('{a}', rng.pick(audiences))
        .replace('{n}', String(2 + rng.int(5))),
    );
  }
  return out;
};

/** LLM distillation with diverse, untemplated prompts over a broad vocabulary (the hard case). */
export const diverseDistillation = (rng: Rng): string[] => {
  const out: string[] = [];
  for (let i = 0; i < 800; i++) out.push(benignPrompt(rng, BROAD_VOCABULARY));
  return out;
};

export const FEATURE_ATTACKS: readonly AttackSpec[] = [
  { name: 'papernot-jbda', generate: papernot, kind: 'features', accounts: 1, pace: 'fast' },
  { name: 'papernot-jbda-stealthy', generate: papernot, kind: 'features', accounts: 1, pace: 'stealthy' },
  { name: 'tramer-uniform', generate: tramerUniform, kind: 'features', accounts: 1, pace: 'fast' },
  {
    name: 'tramer-uniform-stealthy',
    generate: tramerUniform,
    kind: 'features',
    accounts: 1,
    pace: 'stealthy',
  },
  { name: 'tramer-line-search', generate: tramerLineSearch, kind: 'features', accounts: 1, pace: 'fast' },
  { name: 'papernot-jbda-40-accounts', generate: papernot, kind: 'features', accounts: 40, pace: 'stealthy' },
  {
    name: 'tramer-uniform-40-accounts',
    generate: tramerUniform,
    kind: 'features',
    accounts: 40,
    pace: 'stealthy',
  },
];

export const TEXT_ATTACKS: readonly AttackSpec[] = [
  {
    name: 'llm-templated-distillation',
    generate: templatedDistillation,
    kind: 'text',
    accounts: 1,
    pace: 'fast',
  },
  {
    name: 'llm-diverse-distillation-stealthy',
    generate: diverseDistillation,
    kind: 'text',
    accounts: 1,
    pace: 'stealthy',
  },
];

/** Timestamps for `n` attack queries starting somewhere in the simulated week. */
function attackTimes(rng: Rng, n: number, pace: AttackSpec['pace'], days: number): number[] {
  const out: number[] = [];
  if (pace === 'fast') {
    let t = WEEK_START + rng.uniform(0, Math.max(1, days - 1)) * DAY;
    for (let i = 0; i < n; i++) out.push(Math.round((t += rng.exponential(1000))));
    return out;
  }
  let day = rng.int(Math.max(1, Math.min(5, days) - 1));
  let t = WEEK_START + day * DAY + rng.uniform(8, 12) * HOUR;
  for (let i = 0; i < n; i++) {
    t += rng.uniform(30_000, 90_000);
    if (t > WEEK_START + day * DAY + 17 * HOUR) {
      day += day % 7 === 4 ? 3 : 1;
      t = WEEK_START + day * DAY + 8 * HOUR + rng.uniform(0, HOUR);
    }
    out.push(Math.round(t));
  }
  return out;
}

/** `instance` must be unique per scenario: it picks the attacker's /24. */
export function attackTraffic(rng: Rng, spec: AttackSpec, instance: number, days: number): TrafficEvent[] {
  const actor = `${spec.name}#${instance}`;
  const network = `203.${Math.floor(instance / 256) % 256}.${instance % 256}.0/24`;
  const inputs =
    spec.kind === 'features'
      ? (spec.generate as QueryGenerator)(rng, creditModel).map((x) => ({
          features: x,
          outputLabel: creditModel(x),
        }))
      : (spec.generate as (rng: Rng) => string[])(rng).map((text) => ({ text }));
  const times = attackTimes(rng, inputs.length, spec.pace, days);
  return inputs.map((input, i) => ({
    observation: { principal: `${actor}/acct-${i % spec.accounts}`, network, at: times[i]!, ...input },
    actor,
    attack: spec.name,
  }));
}

// ---------------------------------------------------------------- replay and scoring

export interface ActorOutcome {
  readonly attack: string | null;
  readonly queries: number;
  /** 1-based index of the first query that drew an action other than 'none', or null. */
  readonly firstAction: number | null;
  readonly firstActionOf: Partial<Record<Action, number>>;
  /** 1-based index of the first query on which each detector (any scope) fired. */
  readonly firstVerdict: Record<string, number>;
}

export function monitorOptions(
  kind: 'features' | 'text',
  extra: Partial<ExtractionOptions> = {},
): ExtractionOptions {
  return {
    ...(kind === 'features' ? { features: FEATURE_STATS } : {}),
    businessHours: BUSINESS_HOURS,
    ...extra,
  };
}

export function replay(
  monitor: ExtractionMonitor,
  events: readonly TrafficEvent[],
): Map<string, ActorOutcome> {
  const sorted = [...events].sort((a, b) => a.observation.at - b.observation.at);
  const out = new Map<
    string,
    {
      attack: string | null;
      queries: number;
      firstAction: number | null;
      firstActionOf: Partial<Record<Action, number>>;
      firstVerdict: Record<string, number>;
    }
  >();
  for (const e of sorted) {
    let o = out.get(e.actor);
    if (o === undefined) {
      o = { attack: e.attack, queries: 0, firstAction: null, firstActionOf: {}, firstVerdict: {} };
      out.set(e.actor, o);
    }
    o.queries++;
    const r = monitor.observe(e.observation);
    if (r.action !== 'none') {
      o.firstAction ??= o.queries;
      o.firstActionOf[r.action] ??= o.queries;
    }
    for (const v of r.verdicts) o.firstVerdict[v.detector] ??= o.queries;
  }
  return out;
}

export interface Scenario {
  readonly seed: number;
  readonly kind: 'features' | 'text';
  readonly benign: BenignConfig;
  readonly attacks: readonly AttackSpec[];
  readonly instancesPerAttack: number;
  readonly options?: Partial<ExtractionOptions>;
}

export function runScenario(s: Scenario): Map<string, ActorOutcome> {
  const rng = new Rng(s.seed);
  const events = benignTraffic(rng, s.benign);
  let instance = 0;
  for (const spec of s.attacks) {
    for (let i = 0; i < s.instancesPerAttack; i++)
      events.push(...attackTraffic(rng, spec, instance++, s.benign.days));
  }
  return replay(new ExtractionMonitor(monitorOptions(s.kind, s.options)), events);
}

export interface Summary {
  readonly name: string;
  readonly actors: number;
  /** Attacks: share detected (any action); benign: false-positive share. */
  readonly rate: number;
  readonly medianQueries: number | null;
  readonly perDetector: Record<string, { rate: number; medianQueries: number | null }>;
  readonly perAction: Record<string, number>;
}

export function median(values: readonly number[]): number | null {
  if (values.length === 0) return null;
  const s = [...values].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export function summarise(name: string, outcomes: readonly ActorOutcome[]): Summary {
  const detected = outcomes.filter((o) => o.firstAction !== null);
  const detectors = new Set(outcomes.flatMap((o) => Object.keys(o.firstVerdict)));
  const perDetector: Summary['perDetector'] = {};
  for (const d of [...detectors].sort()) {
    const hits = outcomes.map((o) => o.firstVerdict[d]).filter((v): v is number => v !== undefined);
    perDetector[d] = { rate: hits.length / outcomes.length, medianQueries: median(hits) };
  }
  const perAction: Record<string, number> = {};
  for (const a of ['alert', 'throttle', 'step-up', 'block'] as const) {
    perAction[a] =
      outcomes.filter((o) => o.firstActionOf[a] !== undefined).length / Math.max(1, outcomes.length);
  }
  return {
    name,
    actors: outcomes.length,
    rate: outcomes.length === 0 ? 0 : detected.length / outcomes.length,
    medianQueries: median(detected.map((o) => o.firstAction!)),
    perDetector,
    perAction,
  };
}

export function summariseScenario(outcomes: Map<string, ActorOutcome>): Summary[] {
  const byAttack = new Map<string, ActorOutcome[]>();
  for (const o of outcomes.values()) {
    const key = o.attack ?? 'benign users';
    byAttack.set(key, [...(byAttack.get(key) ?? []), o]);
  }
  return [...byAttack.entries()].map(([k, v]) => summarise(k, v));
}

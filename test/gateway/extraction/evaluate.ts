/**
 * Replays benign traffic and simulated extraction attacks through the monitor and prints detection rate,
 * false-positive rate and median queries until detection, per attack and per detector (markdown).
 * Run with `npm run eval:extraction`. Deterministic: same seeds, same figures.
 */
import {
  FEATURE_ATTACKS,
  TEXT_ATTACKS,
  runScenario,
  summarise,
  type ActorOutcome,
  type Scenario,
} from './harness.ts';

const SEEDS = [1, 2, 3];
const scenarios = (kind: 'features' | 'text'): Scenario[] =>
  SEEDS.map((seed) => ({
    seed,
    kind,
    benign: { users: 150, days: 7, usersPerNetwork: 15, usersPerOrganisation: 30, text: kind === 'text' },
    attacks: kind === 'text' ? TEXT_ATTACKS : FEATURE_ATTACKS,
    instancesPerAttack: 4,
  }));

const pct = (x: number): string => `${(100 * x).toFixed(1)}%`;
const q = (x: number | null): string => (x === null ? '–' : String(Math.round(x)));

for (const kind of ['features', 'text'] as const) {
  const started = performance.now();
  const all: ActorOutcome[] = [];
  let benignQueries = 0;
  let benignFlaggedQueries = 0;
  for (const s of scenarios(kind)) {
    const outcomes = runScenario(s);
    all.push(...outcomes.values());
  }
  for (const o of all) {
    if (o.attack !== null) continue;
    benignQueries += o.queries;
    if (o.firstAction !== null) benignFlaggedQueries += o.queries - o.firstAction + 1;
  }
  const groups = new Map<string, ActorOutcome[]>();
  for (const o of all)
    groups.set(o.attack ?? 'benign users', [...(groups.get(o.attack ?? 'benign users') ?? []), o]);
  console.log(
    `\n### ${kind === 'features' ? 'Credit-scoring model (6 numeric features)' : 'Text prompts (LLM)'}\n`,
  );
  console.log(
    `Seeds ${SEEDS.join(', ')}; ${SEEDS.length} × 150 benign users over 7 days; ${all.length} actors; ${((performance.now() - started) / 1000).toFixed(1)} s.\n`,
  );
  console.log(
    '| traffic | actors | detected (any action) | median queries to first action | step-up or block | per detector: share (median queries) |',
  );
  console.log('| --- | ---: | ---: | ---: | ---: | --- |');
  const names = [...groups.keys()].sort((a, b) =>
    a === 'benign users' ? -1 : b === 'benign users' ? 1 : a.localeCompare(b),
  );
  for (const name of names) {
    const s = summarise(name, groups.get(name)!);
    const det = Object.entries(s.perDetector)
      .map(([d, v]) => `${d} ${pct(v.rate)} (${q(v.medianQueries)})`)
      .join(', ');
    const severe = groups
      .get(name)!
      .filter((o) => o.firstActionOf['step-up'] !== undefined || o.firstActionOf.block !== undefined).length;
    console.log(
      `| ${name} | ${s.actors} | ${pct(s.rate)} | ${q(s.medianQueries)} | ${pct(severe / s.actors)} | ${det || '–'} |`,
    );
  }
  console.log(
    `\nBenign queries answered with an action other than none (from the first flagged query of each flagged user on): ${pct(benignFlaggedQueries / Math.max(1, benignQueries))} of ${benignQueries}.`,
  );
}

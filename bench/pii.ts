/**
 * PII engine benchmark: precision/recall/F1 per entity type on the labelled corpus, then throughput of
 * `PrivacyEngine.apply` over ~100 MB of synthetic prose with sparse PII, next to two baselines measured in
 * the same run over the same text: a `String.prototype.indexOf('@')` scan and one simple regex.
 *
 *   ./node_modules/.bin/node bench/pii.ts [megabytes=100]
 */
import { ENTITY_TYPES, PrivacyEngine, PrivacyStream, defaultDetectors } from '../src/privacy/index.ts';
import { buildCorpus, score } from '../test/privacy/corpus.ts';
import * as g from '../test/privacy/generators.ts';
import { Rng } from '../test/privacy/generators.ts';

const MB = 1_000_000;
const totalMb = Number(process.argv[2] ?? 100);
const DOC_CHARS = MB;
/** One PII value per this many characters of prose on average. */
const PII_EVERY = 2000;

const engine = new PrivacyEngine();

function accuracyTable(): void {
  const corpus = buildCorpus();
  const scores = score(
    corpus,
    (text) => engine.detect(text).map((f) => ({ type: f.entity, start: f.start, end: f.end })),
    ENTITY_TYPES,
  );
  console.log(`Labelled corpus: ${corpus.length} samples (exact-span matching)\n`);
  console.log('| entity | TP | FP | FN | precision | recall | F1 |');
  console.log('|---|---:|---:|---:|---:|---:|---:|');
  for (const s of scores) {
    console.log(
      `| ${s.type} | ${s.tp} | ${s.fp} | ${s.fn} | ${s.precision.toFixed(3)} | ${s.recall.toFixed(3)} | ${s.f1.toFixed(3)} |`,
    );
  }
}

const PII: readonly ((rng: Rng) => string)[] = [
  (r) => `Card ${g.card(r)} was charged.`,
  (r) => `Email ${g.email(r)} for details.`,
  (r) => `Call ${g.phone(r)} tomorrow.`,
  (r) => `IBAN ${g.iban(r)} on file.`,
  (r) => `SSN ${g.ssn(r, '-')} verified.`,
  (r) => `Server ${g.ipv4(r)} restarted.`,
  (r) => `Key ${g.apiKey(r)} rotated.`,
  (r) => `Wallet ${g.bitcoin(r)} funded.`,
];

function buildDocuments(rng: Rng): string[] {
  const docs: string[] = [];
  for (let d = 0; d < totalMb; d++) {
    const parts: string[] = [];
    let length = 0;
    let nextPii = rng.int(0, 2 * PII_EVERY);
    while (length < DOC_CHARS) {
      const s = length >= nextPii ? rng.pick(PII)(rng) : g.sentence(rng);
      if (length >= nextPii) nextPii = length + rng.int(0, 2 * PII_EVERY);
      parts.push(s);
      length += s.length + 1;
    }
    docs.push(parts.join(rng.chance(0.1) ? '\n' : ' ').slice(0, DOC_CHARS));
  }
  return docs;
}

/**
 * Wall-clock and CPU-time throughput. Other processes share this machine, so CPU time (user + system of
 * this single-threaded process) is the steadier figure; the ratios use it.
 */
function time(label: string, docs: readonly string[], bytes: number, fn: (doc: string) => number): number {
  fn(docs[0] ?? '');
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  let sink = 0;
  for (const doc of docs) sink += fn(doc);
  const cpu = process.cpuUsage(c0);
  const wall = (performance.now() - t0) / 1000;
  const cpuSeconds = (cpu.user + cpu.system) / 1e6;
  const wallMbps = bytes / MB / wall;
  const cpuMbps = bytes / MB / Math.max(cpuSeconds, 1e-3);
  console.log(
    `| ${label} | ${wall.toFixed(2)} | ${wallMbps.toFixed(1)} | ${cpuSeconds.toFixed(2)} | ${cpuMbps.toFixed(1)} | ${sink} |`,
  );
  return cpuMbps;
}

accuracyTable();

const rng = new Rng(99);
const tGen = performance.now();
const docs = buildDocuments(rng);
const bytes = docs.reduce((n, d) => n + Buffer.byteLength(d, 'utf8'), 0);
console.log(
  `\nSynthetic corpus: ${docs.length} documents, ${(bytes / MB).toFixed(1)} MB, ~1 PII value per ${PII_EVERY} chars ` +
    `(generated in ${((performance.now() - tGen) / 1000).toFixed(1)} s)\n`,
);

const indexOfScan = (doc: string): number => {
  let n = 0;
  for (let i = doc.indexOf('@'); i !== -1; i = doc.indexOf('@', i + 1)) n++;
  return n;
};
const SIMPLE = /\d{3}-\d{2}-\d{4}/g;
const simpleRegex = (doc: string): number => {
  let n = 0;
  SIMPLE.lastIndex = 0;
  while (SIMPLE.exec(doc) !== null) n++;
  return n;
};

console.log('| scan | wall s | MB/s (wall) | CPU s | MB/s (CPU) | hits |');
console.log('|---|---:|---:|---:|---:|---:|');
const baseIndexOf = time("baseline: indexOf('@') scan", docs, bytes, indexOfScan);
const baseRegex = time('baseline: one regex /\\d{3}-\\d{2}-\\d{4}/g', docs, bytes, simpleRegex);
const full = time(
  `engine.apply (${defaultDetectors().length} detectors, redact)`,
  docs,
  bytes,
  (doc) => engine.apply(doc, {}).findings.length,
);

const streamDocs = docs.slice(0, Math.max(1, Math.round(docs.length / 20)));
const streamBytes = streamDocs.reduce((n, d) => n + Buffer.byteLength(d, 'utf8'), 0);
const streamed = time(
  `PrivacyStream, 16-char chunks (${streamDocs.length} MB)`,
  streamDocs,
  streamBytes,
  (doc) => {
    const s = new PrivacyStream(engine, {});
    for (let i = 0; i < doc.length; i += 16) s.push(doc.slice(i, i + 16));
    s.end();
    return s.findings.length;
  },
);

console.log(
  `\n(ratios on CPU-time throughput)\nengine / indexOf baseline: ${(full / baseIndexOf).toFixed(4)} (${(baseIndexOf / full).toFixed(0)}x slower)` +
    `\nengine / one-regex baseline: ${(full / baseRegex).toFixed(4)} (${(baseRegex / full).toFixed(0)}x slower)` +
    `\nstream / engine: ${(streamed / full).toFixed(3)}`,
);

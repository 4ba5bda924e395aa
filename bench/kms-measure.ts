/**
 * Measurement helpers shared by the KMS benchmark's processes: closed-loop async callers with per-operation
 * latency, tight synchronous loops for the raw baselines, and best-of-N selection.
 */

export interface Sample {
  /** Operations (or items, for batches) completed per second. */
  readonly perSecond: number;
  readonly ops: number;
  readonly seconds: number;
  /** Latency of one call (one whole batch for batches), milliseconds; NaN where not measured. */
  readonly p50Ms: number;
  readonly p99Ms: number;
  /** Audit events per fdatasync of the audit log during the run (in-process KMS runs only). */
  readonly eventsPerSync?: number;
  /** CPU time (user + system, all threads) of the measured process per operation or item, microseconds. */
  readonly cpuUsPerOp?: number;
  /** Latencies recorded in whole milliseconds (autocannon): 0 means under 1 ms. */
  readonly wholeMs?: boolean;
}

export function envNumber(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value <= 0) throw new Error(`${name} must be a positive number, not ${raw}`);
  return value;
}

export function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return NaN;
  const index = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[index] ?? NaN;
}

/**
 * `callers` async loops each awaiting `op` back to back (a closed loop: a caller issues its next call when the
 * previous one returns) for `seconds`. `itemsPerOp` scales the rate for batch calls.
 */
export async function closedLoop(
  op: () => Promise<unknown>,
  callers: number,
  seconds: number,
  itemsPerOp = 1,
): Promise<Sample> {
  const latencies: number[] = [];
  const cpu = process.cpuUsage();
  const start = performance.now();
  const deadline = start + seconds * 1000;
  const loop = async (): Promise<void> => {
    while (performance.now() < deadline) {
      const t = performance.now();
      await op();
      latencies.push(performance.now() - t);
    }
  };
  await Promise.all(Array.from({ length: callers }, loop));
  const elapsed = (performance.now() - start) / 1000;
  const used = process.cpuUsage(cpu);
  const sorted = Float64Array.from(latencies).sort();
  return {
    cpuUsPerOp: (used.user + used.system) / Math.max(1, latencies.length * itemsPerOp),
    perSecond: (latencies.length * itemsPerOp) / elapsed,
    ops: latencies.length,
    seconds: elapsed,
    p50Ms: percentile(sorted, 50),
    p99Ms: percentile(sorted, 99),
  };
}

/** A synchronous operation in a tight loop (the clock is read every 256 calls); throughput only. */
export function tightLoop(op: () => void, seconds: number): Sample {
  const cpu = process.cpuUsage();
  const start = performance.now();
  const deadline = start + seconds * 1000;
  let ops = 0;
  while (performance.now() < deadline) {
    for (let i = 0; i < 256; i++) op();
    ops += 256;
  }
  const elapsed = (performance.now() - start) / 1000;
  const used = process.cpuUsage(cpu);
  return {
    perSecond: ops / elapsed,
    ops,
    seconds: elapsed,
    p50Ms: NaN,
    p99Ms: NaN,
    cpuUsPerOp: (used.user + used.system) / ops,
  };
}

/** The run with the highest throughput; its latencies are reported with it (one coherent run, not a mix). */
export function best(samples: readonly Sample[]): Sample {
  const first = samples[0];
  if (first === undefined) throw new Error('no samples');
  return samples.reduce((a, b) => (b.perSecond > a.perSecond ? b : a), first);
}

/**
 * Runs every configuration once per round, `rounds` times, interleaved (so that a burst of load from elsewhere on
 * the machine hurts one round of every configuration rather than every round of one), after one short warm-up
 * per configuration. Returns the best round of each.
 */
export async function interleaved<K extends string>(
  configs: Readonly<Partial<Record<K, (seconds: number) => Promise<Sample> | Sample>>>,
  rounds: number,
  seconds: number,
  warmupSeconds: number,
): Promise<Partial<Record<K, Sample & { runs: number[] }>>> {
  // BENCH_ONLY (a regular expression over configuration names) narrows a run, e.g. for a CPU profile.
  const only = process.env.BENCH_ONLY === undefined ? undefined : new RegExp(process.env.BENCH_ONLY);
  const names = (Object.keys(configs) as K[]).filter((n) => only?.test(n) ?? true);
  const all = new Map<K, Sample[]>(names.map((n) => [n, []]));
  for (const name of names) await configs[name]?.(warmupSeconds);
  for (let round = 0; round < rounds; round++) {
    for (const name of names) {
      const sample = await configs[name]?.(seconds);
      if (sample !== undefined) all.get(name)?.push(sample);
    }
  }
  const out: Partial<Record<K, Sample & { runs: number[] }>> = {};
  for (const name of names) {
    const samples = all.get(name) ?? [];
    if (samples.length === 0) continue;
    out[name] = { ...best(samples), runs: samples.map((s) => Math.round(s.perSecond)) };
  }
  return out;
}

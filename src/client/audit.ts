import type { Readable } from 'node:stream';
import type { WardenHttp } from './http.ts';

export interface AuditCheckpoint {
  readonly treeSize: number;
  readonly rootHash: string;
  readonly note: string;
  readonly createdAt: number;
}

export interface AuditEventRecord {
  readonly index: number;
  readonly time: string;
  readonly leafHash: string;
  /** The event, or null when retention pruned its body (its hash stays in the tree). */
  readonly event: Record<string, unknown> | null;
}

export interface AuditEventQuery {
  readonly principal?: string;
  readonly action?: string;
  readonly resource?: string;
  readonly outcome?: 'success' | 'failure' | 'denied';
  /** RFC 3339 or epoch ms; inclusive. */
  readonly from?: string | number;
  /** Exclusive. */
  readonly to?: string | number;
  readonly after?: number;
  readonly limit?: number;
}

export interface InclusionProofResponse {
  readonly index: number;
  readonly treeSize: number;
  readonly leafHash: string;
  readonly rootHash: string;
  readonly proof: readonly string[];
}

export interface ConsistencyProofResponse {
  readonly from: number;
  readonly to: number;
  readonly fromRoot: string;
  readonly toRoot: string;
  readonly proof: readonly string[];
}

function query(params: Readonly<Record<string, string | number | undefined>>): string {
  const entries = Object.entries(params).filter((e): e is [string, string | number] => e[1] !== undefined);
  return entries.length === 0
    ? ''
    : `?${new URLSearchParams(entries.map(([k, v]): [string, string] => [k, String(v)])).toString()}`;
}

/** The audit log's API (`/v1/audit/...`). Proofs come back as hex; verify them with the audit face. */
export class AuditClient {
  readonly #http: WardenHttp;

  constructor(http: WardenHttp) {
    this.#http = http;
  }

  async verifierKey(): Promise<{ verifierKey: string; origin: string }> {
    return this.#http.json('GET', '/v1/audit/verifier-key');
  }

  async checkpoint(): Promise<AuditCheckpoint> {
    return this.#http.json('GET', '/v1/audit/checkpoint');
  }

  async events(q: AuditEventQuery = {}): Promise<{ events: AuditEventRecord[]; nextCursor: number | null }> {
    return this.#http.json('GET', `/v1/audit/events${query({ ...q })}`);
  }

  /** Every matching event, following the cursor page by page. */
  async *allEvents(q: AuditEventQuery = {}): AsyncGenerator<AuditEventRecord> {
    let after = q.after;
    for (;;) {
      const page = await this.events({ ...q, ...(after === undefined ? {} : { after }) });
      yield* page.events;
      if (page.nextCursor === null) return;
      after = page.nextCursor;
    }
  }

  async inclusionProof(index: number, treeSize?: number): Promise<InclusionProofResponse> {
    return this.#http.json('GET', `/v1/audit/events/${index}/proof${query({ treeSize })}`);
  }

  async consistencyProof(from: number, to?: number): Promise<ConsistencyProofResponse> {
    return this.#http.json('GET', `/v1/audit/consistency${query({ from, to })}`);
  }

  /** The keyed hash a sensitive value is recorded under, to search for it. */
  async hash(value: string): Promise<string> {
    return (await this.#http.json<{ hash: string }>('POST', '/v1/audit/hash', { value })).hash;
  }

  async verify(): Promise<Record<string, number | string>> {
    return this.#http.json('POST', '/v1/audit/verify');
  }

  /** The export (docs/spec/audit-export.md) as a stream of JSON lines. */
  async export(range: { from?: string | number; to?: string | number } = {}): Promise<Readable> {
    return this.#http.stream('GET', `/v1/audit/export${query(range)}`);
  }
}

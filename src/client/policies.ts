import type { WardenHttp } from './http.ts';

export interface PolicyEntryInfo {
  readonly id: string;
  readonly source: 'built-in' | 'guardrail' | 'custom';
  readonly text: string;
  /** Cedar ids of the policies in the text (`<id>` for one, `<id>#<n>` for several). */
  readonly policyIds: readonly string[];
}

export interface PolicyDiagnosticInfo {
  readonly kind: string;
  readonly severity: string;
  readonly message: string;
  readonly line?: number;
  readonly column?: number;
}

/** An attribute value: strings, integers, booleans and sets of strings. */
export type PolicyAttrValue = string | number | boolean | readonly string[];

/** A request described in full, as `simulate` decides it. */
export interface SimulatedRequest {
  readonly principal: {
    readonly type: 'User' | 'ServiceAccount';
    readonly id: string;
    readonly roles?: readonly string[];
    readonly groups?: readonly string[];
    readonly attrs?: Readonly<Record<string, PolicyAttrValue>>;
  };
  /** A Cedar action id, e.g. `kms.crypto.decrypt`, `dataset.read`. */
  readonly action: string;
  readonly resource: {
    readonly type: string;
    readonly id: string;
    readonly attrs?: Readonly<Record<string, PolicyAttrValue>>;
    /** The model of a `ModelVersion`. */
    readonly model?: string;
  };
  readonly context?: {
    /** ISO 8601 instant; default now. */
    readonly time?: string;
    readonly sourceIp?: string;
    readonly mfaAgeSeconds?: number;
    readonly authMethod?: string;
    /** Default: the deployment's environment. */
    readonly environment?: string;
    readonly purpose?: string;
    readonly networkChanged?: boolean;
  };
  /** Decide as if one custom policy were put or removed (nothing is installed). */
  readonly change?:
    { readonly put: { readonly id: string; readonly text: string } } | { readonly remove: string };
}

export interface SimulatedDecision {
  readonly decision: 'allow' | 'deny';
  /** The determining policies: the permits for allow, the forbids for an explicit deny. */
  readonly reasons: readonly string[];
  /** Evaluation and request errors (each of which denies). */
  readonly errors: readonly string[];
  /** The policy-set version decided against. */
  readonly version: number;
  /** Whether `change` was applied. */
  readonly changed: boolean;
}

/** Cedar policies (`/v1/policies/...`): the set in force, custom policies, validation and simulation. */
export class PoliciesClient {
  readonly #http: WardenHttp;

  constructor(http: WardenHttp) {
    this.#http = http;
  }

  /** Every policy in force (built-in roles, guardrails, policy-directory files, custom) and the set's version. */
  async list(): Promise<{ version: number; policies: PolicyEntryInfo[] }> {
    return this.#http.json('GET', '/v1/policies');
  }

  async get(id: string): Promise<PolicyEntryInfo> {
    return this.#http.json('GET', `/v1/policies/${encodeURIComponent(id)}`);
  }

  /** Installs or replaces a custom policy (validated by the server; refused with 409 if it would lock you out). */
  async put(id: string, text: string): Promise<{ version: number; policy: PolicyEntryInfo }> {
    return this.#http.json('PUT', `/v1/policies/${encodeURIComponent(id)}`, { text });
  }

  /** Removes a custom policy; false when there was none of that id. */
  async remove(id: string): Promise<boolean> {
    const r = await this.#http.json<{ removed: boolean }>('DELETE', `/v1/policies/${encodeURIComponent(id)}`);
    return r.removed;
  }

  /** Validates policy text against Warden's schema on the server, installing nothing. */
  async validate(text: string): Promise<{ ok: boolean; diagnostics: PolicyDiagnosticInfo[] }> {
    return this.#http.json('POST', '/v1/policies/validate', { text });
  }

  /** What the policies in force (or with `request.change` applied) decide about `request`; changes nothing. */
  async simulate(request: SimulatedRequest): Promise<SimulatedDecision> {
    return this.#http.json('POST', '/v1/policies/simulate', request);
  }
}

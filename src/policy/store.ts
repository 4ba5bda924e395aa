import { BUILT_IN_POLICIES, guardrailPolicies } from './roles.ts';
import type { GuardrailOptions } from './roles.ts';
import { PolicyValidationError, validatePolicies } from './validate.ts';

export type PolicySource = 'built-in' | 'guardrail' | 'custom';

export interface PolicyEntry {
  /** The id it was installed under; a text of several policies is reported as `<id>#0`, `<id>#1`... */
  readonly id: string;
  readonly source: PolicySource;
  readonly text: string;
  /** The Cedar policy ids this entry contributes (what decisions report as reasons). */
  readonly policyIds: readonly string[];
  /** The text of each of those policies, in the same order. */
  readonly parts: readonly string[];
}

export interface PolicyStoreOptions {
  /** Install the built-in roles (default true). */
  readonly builtInRoles?: boolean;
  /** ABAC guardrails to install (none by default). */
  readonly guardrails?: GuardrailOptions;
}

export const CUSTOM_POLICY_ID = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;
const RESERVED_PREFIXES = ['role.', 'guardrail.'];

/** Installing (or replacing) a custom policy, or removing one. */
export type PolicyChange =
  { readonly put: { readonly id: string; readonly text: string } } | { readonly remove: string };

export class PolicyStoreError extends Error {
  override readonly name = 'PolicyStoreError';
}

/**
 * The in-memory set of policies the engine evaluates: built-in roles, guardrails, and custom policies. Every change
 * yields a new `version` (monotonic, never reused within a process), which keys the decision cache; built-in and
 * guardrail entries are fixed at construction. Custom text is validated against the schema before it is accepted.
 */
export class PolicyStore {
  readonly #entries = new Map<string, PolicyEntry>();
  readonly #listeners = new Set<(version: number) => void>();
  #version = 1;

  constructor(options: PolicyStoreOptions = {}) {
    const fixed: [PolicySource, Record<string, string>][] = [
      ['built-in', options.builtInRoles === false ? {} : BUILT_IN_POLICIES],
      ['guardrail', options.guardrails === undefined ? {} : guardrailPolicies(options.guardrails)],
    ];
    for (const [source, policies] of fixed) {
      for (const [id, text] of Object.entries(policies)) {
        this.#entries.set(id, { id, source, text, policyIds: [id], parts: [text] });
      }
    }
  }

  get version(): number {
    return this.#version;
  }

  list(): readonly PolicyEntry[] {
    return [...this.#entries.values()];
  }

  get(id: string): PolicyEntry | undefined {
    return this.#entries.get(id);
  }

  /** Cedar policy id → text of every installed policy. */
  policies(): Record<string, string> {
    const out: Record<string, string> = {};
    for (const entry of this.#entries.values()) {
      entry.policyIds.forEach((pid, i) => {
        out[pid] = entry.parts[i] ?? '';
      });
    }
    return out;
  }

  /**
   * Validates and installs custom policy text under `id` (replacing an earlier custom entry of that id). Throws
   * `PolicyValidationError` (with positioned diagnostics) when the text is not valid against the schema, and
   * `PolicyStoreError` for a bad or reserved id. Returns the new version.
   */
  add(id: string, text: string): number {
    if (!CUSTOM_POLICY_ID.test(id) || id.includes('#')) {
      throw new PolicyStoreError(`invalid policy id ${JSON.stringify(id)}`);
    }
    if (RESERVED_PREFIXES.some((p) => id.startsWith(p)) || this.#entries.get(id)?.source === 'built-in') {
      throw new PolicyStoreError(`policy id ${JSON.stringify(id)} is reserved`);
    }
    const result = validatePolicies(text);
    if (!result.ok) throw new PolicyValidationError(result.diagnostics);
    const policyIds = result.policies.length === 1 ? [id] : result.policies.map((_, i) => `${id}#${i}`);
    this.#entries.set(id, { id, source: 'custom', text, policyIds, parts: result.policies });
    return this.#bump();
  }

  /** Removes a custom entry; built-in and guardrail entries cannot be removed. Returns whether it existed. */
  remove(id: string): boolean {
    const entry = this.#entries.get(id);
    if (entry === undefined) return false;
    if (entry.source !== 'custom')
      throw new PolicyStoreError(`policy ${JSON.stringify(id)} is not removable`);
    this.#entries.delete(id);
    this.#bump();
    return true;
  }

  /**
   * A copy of this set with one change applied (validated as `add` validates), to see what the change would
   * decide before making it; this store is not touched.
   */
  withChange(change: PolicyChange): PolicyStore {
    const copy = new PolicyStore({ builtInRoles: false });
    for (const [id, entry] of this.#entries) copy.#entries.set(id, entry);
    copy.#version = this.#version;
    if ('remove' in change) copy.remove(change.remove);
    else copy.add(change.put.id, change.put.text);
    return copy;
  }

  /** Called with the new version after every change. Returns an unsubscribe function. */
  onChange(listener: (version: number) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  #bump(): number {
    this.#version += 1;
    for (const listener of this.#listeners) listener(this.#version);
    return this.#version;
  }
}

import { createHmac, createSecretKey, KeyObject } from 'node:crypto';
import type { Detector, EntityType } from './types.ts';

export const ACTIONS = ['redact', 'mask', 'pseudonymize', 'block'] as const;
export type Action = (typeof ACTIONS)[number];

export interface Policy {
  /** Action per entity type; types not listed get `defaultAction`. */
  readonly actions?: Partial<Readonly<Record<EntityType, Action>>>;
  /** Default `redact`. */
  readonly defaultAction?: Action;
  /**
   * Operator key for `pseudonymize`: at least 16 bytes, or a secret KeyObject. The same key gives the same
   * pseudonym for the same value across requests and processes; rotating it unlinks all pseudonyms.
   */
  readonly pseudonymKey?: Uint8Array | KeyObject;
  /** Hex digits of the HMAC kept in a pseudonym, 8..64. Default 8: short, and collisions only merge labels. */
  readonly pseudonymLength?: number;
}

export const MIN_PSEUDONYM_KEY_BYTES = 16;

/** Characters kept at the end of a masked value: enough to recognise one's own card or phone. */
const MASK_KEEP_LAST: Partial<Readonly<Record<EntityType, number>>> = { CREDIT_CARD: 4, PHONE: 4, IBAN: 4 };

/** Separates pseudonym inputs from any other use of the same operator key. */
const PSEUDONYM_DOMAIN = 'warden.privacy.pseudonym.v1';

function defaultCanonical(entity: EntityType, value: string): string {
  switch (entity) {
    case 'CREDIT_CARD':
    case 'US_SSN':
    case 'IN_AADHAAR':
    case 'UK_NHS':
      return value.replace(/\D/g, '');
    case 'IBAN':
    case 'UK_NINO':
    case 'IN_PAN':
      return value.replace(/\s/g, '').toUpperCase();
    case 'EMAIL':
    case 'IP_ADDRESS':
      return value.toLowerCase();
    case 'CRYPTO_ADDRESS':
      // Hex and bech32 are case-insensitive encodings; Base58 is not.
      return /^(?:0x|bc1|tb1)/i.test(value) ? value.toLowerCase() : value;
    case 'PHONE':
      return value.replace(/[^\d+]/g, '');
    case 'SECRET':
    case 'PRIVATE_KEY':
      return value;
  }
}

/**
 * A policy validated once. The key is held as a KeyObject in a private field: it never appears in
 * `util.inspect`, JSON or error messages, and the caller may wipe its own buffer afterwards.
 */
export class CompiledPolicy {
  readonly #actions: Partial<Readonly<Record<EntityType, Action>>>;
  readonly #defaultAction: Action;
  readonly #key: KeyObject | undefined;
  readonly #pseudonymLength: number;

  constructor(policy: Policy) {
    const actions = policy.actions ?? {};
    // Policies may come from configuration files, so the types are not trusted here.
    const given: readonly unknown[] = [...Object.values(actions), policy.defaultAction ?? 'redact'];
    const known: readonly unknown[] = ACTIONS;
    for (const action of given) {
      if (!known.includes(action)) throw new TypeError(`unknown privacy action: ${String(action)}`);
    }
    this.#actions = { ...actions };
    this.#defaultAction = policy.defaultAction ?? 'redact';
    const length = policy.pseudonymLength ?? 8;
    if (!Number.isInteger(length) || length < 8 || length > 64) {
      throw new RangeError('pseudonymLength must be an integer between 8 and 64');
    }
    this.#pseudonymLength = length;
    this.#key = policy.pseudonymKey === undefined ? undefined : toKey(policy.pseudonymKey);
    const usesPseudonyms =
      this.#defaultAction === 'pseudonymize' || Object.values(actions).some((a) => a === 'pseudonymize');
    if (usesPseudonyms && this.#key === undefined) {
      throw new TypeError('the pseudonymize action needs a pseudonymKey');
    }
  }

  actionFor(entity: EntityType): Action {
    return this.#actions[entity] ?? this.#defaultAction;
  }

  /** Replacement text for a value under the entity's action; undefined for `block`. */
  replacement(entity: EntityType, value: string, detector: Detector | undefined): string | undefined {
    const action = this.actionFor(entity);
    switch (action) {
      case 'redact':
        return `[REDACTED:${entity}]`;
      case 'mask':
        return mask(value, MASK_KEEP_LAST[entity] ?? 0);
      case 'pseudonymize':
        return `<${entity}:${this.#pseudonym(entity, detector?.canonical?.(value) ?? defaultCanonical(entity, value))}>`;
      case 'block':
        return undefined;
    }
  }

  #pseudonym(entity: EntityType, canonical: string): string {
    if (this.#key === undefined) throw new TypeError('the pseudonymize action needs a pseudonymKey');
    return createHmac('sha256', this.#key)
      .update(`${PSEUDONYM_DOMAIN}\0${entity}\0${canonical}`, 'utf8')
      .digest('hex')
      .slice(0, this.#pseudonymLength);
  }
}

function toKey(key: Uint8Array | KeyObject): KeyObject {
  if (key instanceof KeyObject) {
    if (key.type !== 'secret') throw new TypeError('pseudonymKey must be a secret key');
    if ((key.symmetricKeySize ?? 0) < MIN_PSEUDONYM_KEY_BYTES) {
      throw new RangeError(`pseudonymKey must be at least ${MIN_PSEUDONYM_KEY_BYTES} bytes`);
    }
    return key;
  }
  if (key.byteLength < MIN_PSEUDONYM_KEY_BYTES) {
    throw new RangeError(`pseudonymKey must be at least ${MIN_PSEUDONYM_KEY_BYTES} bytes`);
  }
  return createSecretKey(Buffer.from(key));
}

/** Letters and digits become `*` except the last `keep`; separators stay, so the shape is still readable. */
function mask(value: string, keep: number): string {
  let alnum = 0;
  for (let i = 0; i < value.length; i++) if (/[A-Za-z0-9]/.test(value.charAt(i))) alnum++;
  let seen = 0;
  let out = '';
  for (let i = 0; i < value.length; i++) {
    const ch = value.charAt(i);
    if (/[A-Za-z0-9]/.test(ch)) {
      seen++;
      out += seen > alnum - keep ? ch : '*';
    } else {
      out += ch;
    }
  }
  return out;
}

export function compilePolicy(policy: Policy | CompiledPolicy): CompiledPolicy {
  return policy instanceof CompiledPolicy ? policy : new CompiledPolicy(policy);
}

/**
 * Canonical JSON for audit events (RFC 8785 JCS for the values events contain): object members sorted by the
 * UTF-16 code units of their names, no insignificant whitespace, strings escaped as JSON.stringify does (which
 * matches JCS), integers only (events carry no floats but latency, which is rounded to microseconds and
 * serialised with JSON's shortest form, as JCS prescribes for numbers). One event has exactly one encoding, so
 * its leaf hash is reproducible by any verifier.
 */
export type CanonicalValue =
  null | boolean | number | string | readonly CanonicalValue[] | { readonly [key: string]: CanonicalValue };

export class CanonicalJsonError extends Error {
  readonly code = 'canonical_json';
}

export function canonicalJson(value: unknown): string {
  if (value === null) return 'null';
  switch (typeof value) {
    case 'string':
      return JSON.stringify(value);
    case 'number':
      if (!Number.isFinite(value)) throw new CanonicalJsonError('non-finite number');
      return Object.is(value, -0) ? '0' : JSON.stringify(value);
    case 'boolean':
      return value ? 'true' : 'false';
    case 'object': {
      // String concatenation over sorted keys: this runs once per entry on the verification hot path.
      if (Array.isArray(value)) {
        let out = '[';
        for (let i = 0; i < value.length; i++) out += (i === 0 ? '' : ',') + canonicalJson(value[i]);
        return `${out}]`;
      }
      const record = value as Record<string, unknown>;
      // Default sort compares UTF-16 code units, exactly JCS's member order.
      const keys = Object.keys(record).sort();
      let out = '{';
      let first = true;
      for (const key of keys) {
        const member = record[key];
        if (member === undefined) continue;
        out += `${first ? '' : ','}${JSON.stringify(key)}:${canonicalJson(member)}`;
        first = false;
      }
      return `${out}}`;
    }
    case 'undefined':
    case 'bigint':
    case 'function':
    case 'symbol':
      throw new CanonicalJsonError(`cannot encode a ${typeof value}`);
  }
  // TypeScript does not treat a switch over `typeof` as exhaustive.
  throw new CanonicalJsonError('cannot encode this value');
}

export function canonicalBytes(value: unknown): Buffer {
  return Buffer.from(canonicalJson(value), 'utf8');
}

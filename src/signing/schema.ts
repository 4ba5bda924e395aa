/**
 * A tiny structural validator for the JSON Schema subset the OMS v1.0 schemas use (type, required, properties,
 * additionalProperties, const/enum, pattern, minLength, minItems/maxItems, minProperties, exclusiveMinimum). The
 * shapes in bundle.ts and statement.ts transcribe schemas/v1.0/*.json; the few conditional rules (anyOf, if/then,
 * Sigstore's oneof) are checked in code next to them.
 *
 * Validation walks the schema, not the value, so its depth is bounded by the schema whatever the input nesting.
 */

export type Schema =
  | {
      readonly type: 'string';
      readonly nullable?: true;
      readonly minLength?: number;
      readonly pattern?: RegExp;
      readonly enum?: readonly string[];
    }
  | { readonly type: 'boolean' }
  | { readonly type: 'integer'; readonly exclusiveMinimum?: number }
  | { readonly type: 'array'; readonly items: Schema; readonly minItems?: number; readonly maxItems?: number }
  | {
      readonly type: 'object';
      readonly properties?: Readonly<Record<string, Schema>>;
      readonly required?: readonly string[];
      /** false: no other keys; a schema: every other key's value must match it; absent: anything goes. */
      readonly additionalProperties?: false | Schema;
      readonly minProperties?: number;
    };

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

export function field(obj: Record<string, unknown>, key: string): unknown {
  return Object.hasOwn(obj, key) ? obj[key] : undefined;
}

/** Returns the first violation as "<path>: <reason>", or undefined when `value` matches. */
export function validate(value: unknown, schema: Schema, path: string): string | undefined {
  switch (schema.type) {
    case 'string': {
      if (value === null && schema.nullable === true) return undefined;
      if (typeof value !== 'string')
        return `${path}: expected a string${schema.nullable === true ? ' or null' : ''}`;
      if (schema.minLength !== undefined && value.length < schema.minLength) return `${path}: too short`;
      if (schema.pattern !== undefined && !schema.pattern.test(value))
        return `${path}: does not match ${schema.pattern.source}`;
      if (schema.enum !== undefined && !schema.enum.includes(value)) {
        return `${path}: must be ${schema.enum.map((e) => JSON.stringify(e)).join(' or ')}`;
      }
      return undefined;
    }
    case 'boolean':
      return typeof value === 'boolean' ? undefined : `${path}: expected a boolean`;
    case 'integer': {
      if (typeof value !== 'number' || !Number.isSafeInteger(value)) return `${path}: expected an integer`;
      if (schema.exclusiveMinimum !== undefined && value <= schema.exclusiveMinimum) {
        return `${path}: must be greater than ${schema.exclusiveMinimum}`;
      }
      return undefined;
    }
    case 'array': {
      if (!Array.isArray(value)) return `${path}: expected an array`;
      if (schema.minItems !== undefined && value.length < schema.minItems)
        return `${path}: needs at least ${schema.minItems} item(s)`;
      if (schema.maxItems !== undefined && value.length > schema.maxItems)
        return `${path}: allows at most ${schema.maxItems} item(s)`;
      for (let i = 0; i < value.length; i++) {
        const problem = validate(value[i], schema.items, `${path}[${i}]`);
        if (problem !== undefined) return problem;
      }
      return undefined;
    }
    case 'object': {
      if (!isPlainObject(value)) return `${path}: expected an object`;
      for (const key of schema.required ?? []) {
        if (!Object.hasOwn(value, key)) return `${path}: missing "${key}"`;
      }
      const keys = Object.keys(value);
      if (schema.minProperties !== undefined && keys.length < schema.minProperties)
        return `${path}: must not be empty`;
      for (const key of keys) {
        const sub =
          schema.properties !== undefined && Object.hasOwn(schema.properties, key)
            ? schema.properties[key]
            : undefined;
        const child = sub ?? schema.additionalProperties;
        if (child === false) return `${path}: unexpected "${key}"`;
        if (child === undefined) continue;
        const problem = validate(value[key], child, `${path}.${key}`);
        if (problem !== undefined) return problem;
      }
      return undefined;
    }
  }
}

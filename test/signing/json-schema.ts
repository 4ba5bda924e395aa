import { readFileSync } from 'node:fs';
import { vectorPath } from '../support/vectors.ts';

/**
 * An independent reading of the published OMS v1.0 JSON Schemas, for differential tests of the hand-transcribed
 * shapes in src/signing. Implements the Draft 2020-12 subset those four files use: type, required, properties,
 * additionalProperties, const, enum, pattern, minLength, minItems, maxItems, minProperties, exclusiveMinimum,
 * items, anyOf, if/then and $ref (to `#/$defs/...` or to another file's `$id`).
 */

type SchemaNode = Record<string, unknown>;

const FILES = ['bundle', 'envelope', 'statement', 'predicate'] as const;
export type SchemaName = (typeof FILES)[number];

function load(): Map<string, SchemaNode> {
  const byId = new Map<string, SchemaNode>();
  for (const name of FILES) {
    const schema = JSON.parse(
      readFileSync(vectorPath('model-signing', 'schemas', 'v1.0', `${name}.schema.json`), 'utf8'),
    ) as SchemaNode;
    byId.set(name, schema);
    byId.set(String(schema.$id), schema);
  }
  return byId;
}

const schemas = load();

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

// JSON Schema string lengths count code points, not UTF-16 units.
function codePoints(s: string): number {
  let n = 0;
  for (const _ of s) n++;
  return n;
}

function typeOk(value: unknown, type: string): boolean {
  switch (type) {
    case 'object':
      return isObject(value);
    case 'array':
      return Array.isArray(value);
    case 'string':
      return typeof value === 'string';
    case 'boolean':
      return typeof value === 'boolean';
    case 'null':
      return value === null;
    case 'integer':
      return typeof value === 'number' && Number.isInteger(value);
    case 'number':
      return typeof value === 'number';
    default:
      throw new Error(`schema uses unsupported type ${type}`);
  }
}

const KNOWN = new Set([
  '$schema',
  '$id',
  'title',
  'description',
  '$defs',
  'type',
  'required',
  'properties',
  'additionalProperties',
  'const',
  'enum',
  'pattern',
  'minLength',
  'minItems',
  'maxItems',
  'minProperties',
  'exclusiveMinimum',
  'items',
  'anyOf',
  'if',
  'then',
  '$ref',
]);

function check(value: unknown, node: SchemaNode, root: SchemaNode): boolean {
  for (const key of Object.keys(node)) {
    if (!KNOWN.has(key)) throw new Error(`schema uses unsupported keyword ${key}`);
  }
  if (typeof node.$ref === 'string') {
    const ref = node.$ref;
    const target = ref.startsWith('#/$defs/')
      ? ((root.$defs as Record<string, SchemaNode>)[ref.slice('#/$defs/'.length)] ?? {})
      : schemas.get(ref);
    if (target === undefined) throw new Error(`unresolved $ref ${ref}`);
    if (!check(value, target, ref.startsWith('#') ? root : target)) return false;
  }
  if (node.type !== undefined) {
    const types = Array.isArray(node.type) ? (node.type as string[]) : [node.type as string];
    if (!types.some((t) => typeOk(value, t))) return false;
  }
  if ('const' in node && JSON.stringify(value) !== JSON.stringify(node.const)) return false;
  if (Array.isArray(node.enum) && !node.enum.some((e) => JSON.stringify(e) === JSON.stringify(value)))
    return false;
  if (typeof value === 'string') {
    if (typeof node.pattern === 'string' && !new RegExp(node.pattern, 'u').test(value)) return false;
    if (typeof node.minLength === 'number' && codePoints(value) < node.minLength) return false;
  }
  if (
    typeof value === 'number' &&
    typeof node.exclusiveMinimum === 'number' &&
    value <= node.exclusiveMinimum
  ) {
    return false;
  }
  if (Array.isArray(value)) {
    if (typeof node.minItems === 'number' && value.length < node.minItems) return false;
    if (typeof node.maxItems === 'number' && value.length > node.maxItems) return false;
    if (isObject(node.items) && !value.every((item) => check(item, node.items as SchemaNode, root)))
      return false;
  }
  if (isObject(value)) {
    const required = (node.required as string[] | undefined) ?? [];
    if (!required.every((k) => Object.hasOwn(value, k))) return false;
    if (typeof node.minProperties === 'number' && Object.keys(value).length < node.minProperties)
      return false;
    const properties = (node.properties as Record<string, SchemaNode> | undefined) ?? {};
    for (const [k, v] of Object.entries(value)) {
      const sub = Object.hasOwn(properties, k) ? properties[k] : undefined;
      if (sub !== undefined) {
        if (!check(v, sub, root)) return false;
      } else if (node.additionalProperties === false) {
        return false;
      } else if (isObject(node.additionalProperties) && !check(v, node.additionalProperties, root)) {
        return false;
      }
    }
  }
  if (Array.isArray(node.anyOf) && !(node.anyOf as SchemaNode[]).some((s) => check(value, s, root)))
    return false;
  if (
    isObject(node.if) &&
    check(value, node.if, root) &&
    isObject(node.then) &&
    !check(value, node.then, root)
  ) {
    return false;
  }
  return true;
}

/** Whether `value` is valid against the named published schema. */
export function schemaValid(name: SchemaName, value: unknown): boolean {
  const schema = schemas.get(name);
  if (schema === undefined) throw new Error(`no schema ${name}`);
  return check(value, schema, schema);
}

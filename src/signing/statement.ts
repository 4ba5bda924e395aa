import { createHash } from 'node:crypto';
import { StatementError, UnsupportedError } from './errors.ts';
import { DIGEST_HEX_LENGTH, HASH_ALGORITHMS, type HashAlgorithm } from './hash-core.ts';
import { canonicalIgnorePath, nameProblem, parseShardName } from './paths.ts';
import { field, isPlainObject, validate, type Schema } from './schema.ts';

/** The in-toto Statement v1 that OMS signs (§5, §6.5, §6.6), and its strict parser (§8.3). */

export const STATEMENT_TYPE = 'https://in-toto.io/Statement/v1';
export const PREDICATE_TYPE = 'https://model_signing/signature/v1.0';
/** The v0.2.0 layout (digests in `subject`). Verifiers MAY support it; this one recognises it only to say so. */
export const LEGACY_PREDICATE_TYPE = 'https://model_signing/Digests/v0.1';

export interface ResourceDescriptor {
  readonly name: string;
  readonly digest: string;
  readonly algorithm: HashAlgorithm;
}

export type SerializationParameters =
  | {
      readonly method: 'files';
      readonly hash_type: HashAlgorithm;
      readonly allow_symlinks: boolean;
      readonly ignore_paths?: readonly string[];
    }
  | {
      readonly method: 'shards';
      readonly hash_type: HashAlgorithm;
      readonly shard_size: number;
      readonly allow_symlinks: boolean;
      readonly ignore_paths?: readonly string[];
    };

/** A model's manifest: what the predicate carries, plus the informational subject name. */
export interface Manifest {
  readonly modelName: string;
  readonly resources: readonly ResourceDescriptor[];
  readonly serialization: SerializationParameters;
}

export interface Statement {
  readonly _type: typeof STATEMENT_TYPE;
  readonly subject: readonly [{ readonly name: string; readonly digest: Readonly<Record<string, string>> }];
  readonly predicateType: typeof PREDICATE_TYPE;
  readonly predicate: {
    readonly resources: readonly ResourceDescriptor[];
    readonly serialization: SerializationParameters;
  };
}

/** §6.5.1: SHA-256 over the concatenated raw digests, in manifest order, whatever the per-file hash. */
export function rootDigest(resources: readonly { readonly digest: string }[]): string {
  const hash = createHash('sha256');
  for (const r of resources) hash.update(Buffer.from(r.digest, 'hex'));
  return hash.digest('hex');
}

export function buildStatement(manifest: Manifest): Statement {
  return {
    _type: STATEMENT_TYPE,
    subject: [{ name: manifest.modelName, digest: { sha256: rootDigest(manifest.resources) } }],
    predicateType: PREDICATE_TYPE,
    predicate: { resources: manifest.resources, serialization: manifest.serialization },
  };
}

export function encodeStatement(statement: Statement): Buffer {
  return Buffer.from(JSON.stringify(statement), 'utf8');
}

const HEX = /^[0-9a-f]+$/;

// schemas/v1.0/predicate.schema.json
const resourceSchema: Schema = {
  type: 'object',
  required: ['name', 'digest', 'algorithm'],
  properties: {
    name: { type: 'string', minLength: 1 },
    digest: { type: 'string', pattern: HEX },
    algorithm: { type: 'string', enum: HASH_ALGORITHMS },
  },
};

const serializationSchema: Schema = {
  type: 'object',
  required: ['method', 'hash_type', 'allow_symlinks'],
  properties: {
    method: { type: 'string', enum: ['files', 'shards'] },
    hash_type: { type: 'string', enum: HASH_ALGORITHMS },
    shard_size: { type: 'integer', exclusiveMinimum: 0 },
    allow_symlinks: { type: 'boolean' },
    ignore_paths: { type: 'array', items: { type: 'string', minLength: 1 } },
  },
  additionalProperties: false,
};

const predicateSchema: Schema = {
  type: 'object',
  required: ['resources', 'serialization'],
  properties: {
    // The schema has no minItems here; §5.2.1 ("MUST contain at least one entry") does.
    resources: { type: 'array', items: resourceSchema, minItems: 1 },
    serialization: serializationSchema,
  },
  additionalProperties: false,
};

// schemas/v1.0/statement.schema.json
const statementSchema: Schema = {
  type: 'object',
  required: ['_type', 'subject', 'predicateType', 'predicate'],
  properties: {
    _type: { type: 'string', enum: [STATEMENT_TYPE] },
    subject: {
      type: 'array',
      minItems: 1,
      maxItems: 1,
      items: {
        type: 'object',
        required: ['name', 'digest'],
        properties: {
          name: { type: 'string', minLength: 1 },
          digest: {
            type: 'object',
            minProperties: 1,
            additionalProperties: { type: 'string', pattern: HEX },
          },
        },
      },
    },
    predicateType: { type: 'string', enum: [PREDICATE_TYPE] },
    predicate: predicateSchema,
  },
  additionalProperties: false,
};

/**
 * Decodes and validates a DSSE payload as an OMS statement: both schemas, then the rules the spec states in prose
 * (shard_size only with shards, resource algorithm = hash_type, digest lengths, canonical unique names, valid
 * ignore paths, subject digest = root digest of the resources as listed). Resource order is not enforced: the
 * reference implementation lists resources in its own path order, and ordering carries no integrity.
 */
export function parseStatement(payload: Uint8Array): Statement {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(payload);
  } catch (err) {
    throw new StatementError('payload is not UTF-8', { cause: err });
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new StatementError('payload is not JSON', { cause: err });
  }
  if (isPlainObject(value) && field(value, 'predicateType') === LEGACY_PREDICATE_TYPE) {
    throw new UnsupportedError(
      `the deprecated predicate type ${LEGACY_PREDICATE_TYPE} (v0.2.0) is not supported`,
    );
  }
  const problem = validate(value, statementSchema, 'statement');
  if (problem !== undefined) throw new StatementError(problem);
  const statement = value as Statement;
  checkSemantics(statement);
  return statement;
}

function checkSemantics(statement: Statement): void {
  const { resources, serialization } = statement.predicate;
  const hashType = serialization.hash_type;
  if (serialization.method === 'files' && 'shard_size' in serialization) {
    throw new StatementError('serialization.shard_size must be absent for method "files"');
  }
  if (serialization.method === 'shards' && !('shard_size' in serialization)) {
    throw new StatementError('serialization.shard_size is required for method "shards"');
  }
  for (const entry of serialization.ignore_paths ?? []) {
    const canonical = canonicalIgnorePath(entry);
    if ('problem' in canonical)
      throw new StatementError(`ignore path ${JSON.stringify(entry)} ${canonical.problem}`);
  }
  const seen = new Set<string>();
  for (const r of resources) {
    if (r.algorithm !== hashType) {
      throw new StatementError(
        `resource ${JSON.stringify(r.name)} uses ${r.algorithm}, serialization says ${hashType}`,
      );
    }
    if (r.digest.length !== DIGEST_HEX_LENGTH[hashType]) {
      throw new StatementError(
        `resource ${JSON.stringify(r.name)} has a digest of the wrong length for ${hashType}`,
      );
    }
    if (seen.has(r.name)) throw new StatementError(`resource ${JSON.stringify(r.name)} is listed twice`);
    seen.add(r.name);
    if (serialization.method === 'files') {
      const why = nameProblem(r.name);
      if (why !== undefined) throw new StatementError(`resource name ${JSON.stringify(r.name)} ${why}`);
    } else {
      const shard = parseShardName(r.name);
      const size = serialization.shard_size;
      if (shard === undefined || shard.start % size !== 0 || shard.end - shard.start > size) {
        throw new StatementError(
          `resource name ${JSON.stringify(r.name)} is not a valid shard of size ${size}`,
        );
      }
    }
  }
  const subject = statement.subject[0];
  const declared = field(subject.digest, 'sha256');
  if (typeof declared !== 'string' || declared.length !== 64) {
    throw new StatementError('subject digest must carry a SHA-256 root digest');
  }
  if (declared !== rootDigest(resources)) {
    throw new StatementError('subject root digest does not match the resources');
  }
}

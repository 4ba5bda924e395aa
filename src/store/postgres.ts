// The PostgreSQL connection pool, with the value conventions of the store (see docs/store.md):
// - BIGINT (int8) comes back as a JavaScript number, like SQLite's INTEGER, instead of pg's default string;
//   a value beyond ±(2^53 − 1) fails the query instead of being rounded;
// - BYTEA comes back as a plain Uint8Array, like SQLite's BLOB, instead of a Buffer.
// The parsers are set per pool (pg's TypeOverrides), never on pg's global `types`, so other pg users in the
// process are unaffected.

import { Pool, TypeOverrides, types } from 'pg';
import { StoreError } from './errors.ts';
import type { PostgresStoreConfig } from './types.ts';

const OID_BYTEA = types.builtins.BYTEA;
const OID_INT8 = types.builtins.INT8;

/** Parses int8 text to a number, refusing values a double cannot hold exactly. */
export function parseInt8(text: string): number {
  const value = Number(text);
  if (!Number.isSafeInteger(value)) {
    throw new RangeError(
      `BIGINT value ${text} is beyond Number.MAX_SAFE_INTEGER and cannot be read as a number`,
    );
  }
  return value;
}

const parseByteaDefault = types.getTypeParser(OID_BYTEA, 'text') as (text: string) => Buffer;

/** Parses bytea text (hex format, or the legacy escape format) to a plain Uint8Array with its own memory. */
export function parseBytea(text: string): Uint8Array {
  if (text.startsWith('\\x')) {
    const hex = text.slice(2);
    // Buffer.alloc never hands out a slice of Node's shared pool, so the bytes (possibly key material) do not share
    // an ArrayBuffer with unrelated data.
    const out = Buffer.alloc(hex.length >>> 1);
    out.write(hex, 'hex');
    return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
  }
  return new Uint8Array(parseByteaDefault(text));
}

const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

export function validateSchemaName(schema: string): string {
  if (!SCHEMA_NAME.test(schema)) {
    throw new StoreError(
      `invalid schema name ${JSON.stringify(schema)}: use lowercase letters, digits and _`,
    );
  }
  return schema;
}

export function createPool(config: PostgresStoreConfig): Pool {
  const typeOverrides = new TypeOverrides();
  typeOverrides.setTypeParser(OID_INT8, 'text', parseInt8);
  typeOverrides.setTypeParser(OID_BYTEA, 'text', parseBytea);
  const pool = new Pool({
    connectionString: config.url,
    max: config.maxConnections ?? 10,
    types: typeOverrides,
    application_name: 'warden',
    // A schema name was validated above, so it needs no quoting in the startup options.
    ...(config.schema === undefined
      ? {}
      : { options: `-c search_path=${validateSchemaName(config.schema)}` }),
  });
  // An idle client whose connection breaks (server restart, network) emits 'error' on the pool; without a listener
  // that would crash the process. pg removes the broken client; the next query opens a new connection.
  pool.on('error', () => undefined);
  return pool;
}

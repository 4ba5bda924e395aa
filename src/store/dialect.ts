// A thin wrapper around Kysely's SqliteDialect / PostgresDialect that makes the two behave alike:
// - driver errors become typed store errors (StoreConflictError, StoreBusyError) at the connection boundary,
//   so they surface the same way from queries, from COMMIT and from BEGIN;
// - JavaScript booleans bound as parameters are sent as 1/0 on both dialects (the 0/1 flag convention);
// - SQLite transactions start with BEGIN IMMEDIATE instead of Kysely's plain (deferred) BEGIN: the write lock is
//   taken up front, so concurrent writers queue on busy_timeout instead of failing with SQLITE_BUSY when a reader
//   upgrades to a writer mid-transaction, and every transaction is serialisable.

import { CompiledQuery } from 'kysely';
import type {
  DatabaseConnection,
  DatabaseIntrospector,
  Dialect,
  DialectAdapter,
  Driver,
  Kysely,
  QueryCompiler,
  QueryResult,
  TransactionSettings,
} from 'kysely';
import type { AbortableOperationOptions } from 'kysely';
import { mapDriverError } from './errors.ts';
import type { StoreDialect } from './types.ts';

function withPortableParameters(query: CompiledQuery): CompiledQuery {
  if (!query.parameters.some((p) => typeof p === 'boolean')) return query;
  return { ...query, parameters: query.parameters.map((p) => (typeof p === 'boolean' ? (p ? 1 : 0) : p)) };
}

class MappedConnection implements DatabaseConnection {
  readonly inner: DatabaseConnection;
  readonly #dialect: StoreDialect;

  constructor(dialect: StoreDialect, inner: DatabaseConnection) {
    this.#dialect = dialect;
    this.inner = inner;
    // Optional capabilities (query cancellation on abort) exist only if the inner connection has them.
    if (inner.cancelQuery) this.cancelQuery = inner.cancelQuery.bind(inner);
    if (inner.killSession) this.killSession = inner.killSession.bind(inner);
    if (inner.collectSessionInfo) this.collectSessionInfo = inner.collectSessionInfo.bind(inner);
  }

  cancelQuery?: DatabaseConnection['cancelQuery'];
  killSession?: DatabaseConnection['killSession'];
  collectSessionInfo?: DatabaseConnection['collectSessionInfo'];

  async executeQuery<R>(query: CompiledQuery, options?: AbortableOperationOptions): Promise<QueryResult<R>> {
    try {
      return await this.inner.executeQuery<R>(withPortableParameters(query), options);
    } catch (err) {
      throw mapDriverError(this.#dialect, err);
    }
  }

  async *streamQuery<R>(
    query: CompiledQuery,
    chunkSize: number,
    options?: AbortableOperationOptions,
  ): AsyncIterableIterator<QueryResult<R>> {
    try {
      yield* this.inner.streamQuery<R>(withPortableParameters(query), chunkSize, options);
    } catch (err) {
      throw mapDriverError(this.#dialect, err);
    }
  }
}

function unwrap(connection: DatabaseConnection): DatabaseConnection {
  return connection instanceof MappedConnection ? connection.inner : connection;
}

class WardenDriver implements Driver {
  readonly #dialect: StoreDialect;
  readonly #inner: Driver;

  constructor(dialect: StoreDialect, inner: Driver) {
    this.#dialect = dialect;
    this.#inner = inner;
  }

  async #mapped<T>(run: () => Promise<T>): Promise<T> {
    try {
      return await run();
    } catch (err) {
      throw mapDriverError(this.#dialect, err);
    }
  }

  async init(options?: AbortableOperationOptions): Promise<void> {
    await this.#inner.init(options);
  }

  async acquireConnection(options?: AbortableOperationOptions): Promise<DatabaseConnection> {
    return new MappedConnection(
      this.#dialect,
      await this.#mapped(() => this.#inner.acquireConnection(options)),
    );
  }

  async beginTransaction(connection: DatabaseConnection, settings: TransactionSettings): Promise<void> {
    if (this.#dialect === 'sqlite') {
      // Isolation levels do not apply: with one writer at a time, SQLite transactions are serializable.
      await connection.executeQuery(CompiledQuery.raw('begin immediate'));
      return;
    }
    await this.#mapped(() => this.#inner.beginTransaction(unwrap(connection), settings));
  }

  async commitTransaction(connection: DatabaseConnection): Promise<void> {
    await this.#mapped(() => this.#inner.commitTransaction(unwrap(connection)));
  }

  async rollbackTransaction(connection: DatabaseConnection): Promise<void> {
    await this.#mapped(() => this.#inner.rollbackTransaction(unwrap(connection)));
  }

  async savepoint(
    connection: DatabaseConnection,
    name: string,
    compile: QueryCompiler['compileQuery'],
  ): Promise<void> {
    await this.#mapped(async () => {
      if (!this.#inner.savepoint) throw new Error('savepoints are not supported by this driver');
      await this.#inner.savepoint(unwrap(connection), name, compile);
    });
  }

  async rollbackToSavepoint(
    connection: DatabaseConnection,
    name: string,
    compile: QueryCompiler['compileQuery'],
  ): Promise<void> {
    await this.#mapped(async () => {
      if (!this.#inner.rollbackToSavepoint) throw new Error('savepoints are not supported by this driver');
      await this.#inner.rollbackToSavepoint(unwrap(connection), name, compile);
    });
  }

  async releaseSavepoint(
    connection: DatabaseConnection,
    name: string,
    compile: QueryCompiler['compileQuery'],
  ): Promise<void> {
    await this.#mapped(async () => {
      if (!this.#inner.releaseSavepoint) throw new Error('savepoints are not supported by this driver');
      await this.#inner.releaseSavepoint(unwrap(connection), name, compile);
    });
  }

  async releaseConnection(
    connection: DatabaseConnection,
    options?: AbortableOperationOptions,
  ): Promise<void> {
    await this.#inner.releaseConnection(unwrap(connection), options);
  }

  async destroy(options?: AbortableOperationOptions): Promise<void> {
    await this.#inner.destroy(options);
  }
}

/** Wraps a Kysely dialect with Warden's error mapping, parameter conventions and transaction start. */
export function wardenDialect(dialect: StoreDialect, inner: Dialect): Dialect {
  return {
    createDriver: (): Driver => new WardenDriver(dialect, inner.createDriver()),
    createQueryCompiler: (): QueryCompiler => inner.createQueryCompiler(),
    createAdapter: (): DialectAdapter => inner.createAdapter(),
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- Kysely's own Dialect signature.
    createIntrospector: (db: Kysely<any>): DatabaseIntrospector => inner.createIntrospector(db),
  };
}

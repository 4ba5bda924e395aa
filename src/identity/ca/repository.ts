import type { Kysely } from 'kysely';
import { columnTypes } from '../../store/index.ts';
import type { Bytes, EpochMillis, Migration, Store, StoreDialect } from '../../store/index.ts';
import type { RevocationReason } from './x509.ts';

/** What a certificate is for: a CA certificate (one per KMS key version, renewed), a server or a client leaf. */
export type CertificateProfile = 'ca' | 'server' | 'client';

/** One issued certificate in the inventory. */
export interface CertificateRecord {
  /** Canonical lowercase hex (`serialHex`). */
  readonly serial: string;
  readonly profile: CertificateProfile;
  readonly subject: string;
  /**
   * What the certificate binds: the client's principal id (`service:gateway`), the server's names
   * (`dns:a.example,ip:10.0.0.1`), or the CA's subject.
   */
  readonly identity: string;
  /** Serial of the issuing CA certificate; null for CA certificates (self-signed). */
  readonly issuerSerial: string | null;
  /** KMS key version that signed it (and, for CA certificates, that it certifies). */
  readonly keyVersion: number;
  readonly notBefore: EpochMillis;
  readonly notAfter: EpochMillis;
  readonly der: Buffer;
  readonly issuedAt: EpochMillis;
  readonly issuedBy: string;
  readonly revokedAt: EpochMillis | null;
  readonly revocationReason: RevocationReason | null;
  readonly revokedBy: string | null;
}

export interface CaSchema {
  ca_certificates: {
    serial: string;
    profile: string;
    subject: string;
    identity: string;
    issuer_serial: string | null;
    key_version: number;
    not_before: EpochMillis;
    not_after: EpochMillis;
    der: Bytes;
    issued_at: EpochMillis;
    issued_by: string;
    revoked_at: EpochMillis | null;
    revocation_reason: string | null;
    revoked_by: string | null;
  };
}

/**
 * The namespace is `identity-ca`, not `identity`: a namespace belongs to one migration list (the store refuses a
 * list that does not know an applied id of its namespace), and other identity components keep their own lists.
 */
export const CA_MIGRATIONS: readonly Migration[] = [
  {
    id: 'identity-ca/0001-certificates',
    async up(db: Kysely<unknown>, dialect: StoreDialect) {
      const t = columnTypes(dialect);
      await db.schema
        .createTable('ca_certificates')
        .addColumn('serial', 'text', (c) => c.primaryKey())
        .addColumn('profile', 'text', (c) => c.notNull())
        .addColumn('subject', 'text', (c) => c.notNull())
        .addColumn('identity', 'text', (c) => c.notNull())
        .addColumn('issuer_serial', 'text')
        .addColumn('key_version', 'integer', (c) => c.notNull())
        .addColumn('not_before', t.epochMillis, (c) => c.notNull())
        .addColumn('not_after', t.epochMillis, (c) => c.notNull())
        .addColumn('der', t.bytes, (c) => c.notNull())
        .addColumn('issued_at', t.epochMillis, (c) => c.notNull())
        .addColumn('issued_by', 'text', (c) => c.notNull())
        .addColumn('revoked_at', t.epochMillis)
        .addColumn('revocation_reason', 'text')
        .addColumn('revoked_by', 'text')
        .execute();
      await db.schema
        .createIndex('ca_certificates_profile_not_after')
        .on('ca_certificates')
        .columns(['profile', 'not_after'])
        .execute();
      await db.schema
        .createIndex('ca_certificates_revoked_not_after')
        .on('ca_certificates')
        .columns(['revoked_at', 'not_after'])
        .execute();
    },
  },
];

type Row = CaSchema['ca_certificates'];

function toRecord(row: Row): CertificateRecord {
  return {
    serial: row.serial,
    profile: row.profile as CertificateProfile,
    subject: row.subject,
    identity: row.identity,
    issuerSerial: row.issuer_serial,
    keyVersion: row.key_version,
    notBefore: row.not_before,
    notAfter: row.not_after,
    der: Buffer.from(row.der),
    issuedAt: row.issued_at,
    issuedBy: row.issued_by,
    revokedAt: row.revoked_at,
    revocationReason: row.revocation_reason as RevocationReason | null,
    revokedBy: row.revoked_by,
  };
}

export interface ListFilter {
  readonly profile?: CertificateProfile;
  /** Only certificates still valid at this instant (not expired); absent: all. */
  readonly validAt?: EpochMillis;
  readonly limit?: number;
}

/** The certificate inventory on the store face (SQLite or PostgreSQL). */
export class SqlCaRepository {
  readonly #store: Store<CaSchema>;

  constructor(store: Store<CaSchema>) {
    this.#store = store;
  }

  static async open(store: Store<CaSchema>): Promise<SqlCaRepository> {
    await store.migrate(CA_MIGRATIONS);
    return new SqlCaRepository(store);
  }

  async insert(record: CertificateRecord): Promise<void> {
    await this.#store.db
      .insertInto('ca_certificates')
      .values({
        serial: record.serial,
        profile: record.profile,
        subject: record.subject,
        identity: record.identity,
        issuer_serial: record.issuerSerial,
        key_version: record.keyVersion,
        not_before: record.notBefore,
        not_after: record.notAfter,
        der: record.der,
        issued_at: record.issuedAt,
        issued_by: record.issuedBy,
        revoked_at: record.revokedAt,
        revocation_reason: record.revocationReason,
        revoked_by: record.revokedBy,
      })
      .execute();
  }

  async get(serial: string): Promise<CertificateRecord | undefined> {
    const row = await this.#store.db
      .selectFrom('ca_certificates')
      .selectAll()
      .where('serial', '=', serial)
      .executeTakeFirst();
    return row === undefined ? undefined : toRecord(row);
  }

  /** Newest first (by not-after, then serial, so the order is total). */
  async list(filter: ListFilter = {}): Promise<CertificateRecord[]> {
    let query = this.#store.db.selectFrom('ca_certificates').selectAll();
    if (filter.profile !== undefined) query = query.where('profile', '=', filter.profile);
    if (filter.validAt !== undefined) query = query.where('not_after', '>', filter.validAt);
    query = query.orderBy('not_after', 'desc').orderBy('serial', 'desc');
    if (filter.limit !== undefined) query = query.limit(filter.limit);
    return (await query.execute()).map(toRecord);
  }

  /** Marks a certificate revoked unless it already is; false when nothing changed. */
  async revoke(serial: string, at: EpochMillis, reason: RevocationReason, by: string): Promise<boolean> {
    const result = await this.#store.db
      .updateTable('ca_certificates')
      .set({ revoked_at: at, revocation_reason: reason, revoked_by: by })
      .where('serial', '=', serial)
      .where('revoked_at', 'is', null)
      .executeTakeFirst();
    return result.numUpdatedRows > 0n;
  }

  /** Revoked certificates that have not expired at `now`: what a CRL must list. */
  async listRevoked(now: EpochMillis): Promise<CertificateRecord[]> {
    const rows = await this.#store.db
      .selectFrom('ca_certificates')
      .selectAll()
      .where('revoked_at', 'is not', null)
      .where('not_after', '>', now)
      .orderBy('serial')
      .execute();
    return rows.map(toRecord);
  }
}

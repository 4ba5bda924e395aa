import type { Generated, Kysely, Transaction } from 'kysely';
import { columnTypes, flagCheck, StoreConflictError } from '../store/index.ts';
import type { EpochMillis, Flag, Migration, Store, StoreDialect } from '../store/index.ts';
import type { Finding, FormatName, Verdict } from '../scanner/index.ts';
import { ConflictError } from './errors.ts';
import type { Sensitivity, Stage } from './names.ts';
import type {
  ApprovalRecord,
  ApprovalStatus,
  ChangeRecord,
  DatasetVersionRecord,
  FileRecord,
  Lineage,
  LineageDataset,
  ModelRecord,
  ModelVersionRecord,
  QuarantineState,
  ScanRecord,
  ScanSummary,
  SignatureRecord,
  StageRecord,
  SubjectKind,
  WaiverRecord,
} from './types.ts';

/** The registry's tables (SQLite and PostgreSQL through the store face). Migrations: `registry/...`. */
export interface RegistrySchema {
  registry_models: {
    id: string;
    name: string;
    owner: string | null;
    description: string | null;
    created_by: string;
    created_at: EpochMillis;
    quarantined: Flag;
    quarantine_reason: string | null;
    quarantined_by: string | null;
    quarantined_at: EpochMillis | null;
  };
  registry_model_versions: {
    id: string;
    model_id: string;
    version: string;
    digest: string;
    size: number;
    file_count: number;
    format: string;
    description: string | null;
    framework: string | null;
    license: string | null;
    code_commit: string | null;
    code_repository: string | null;
    parameters: string;
    parent_version_id: string | null;
    created_by: string;
    created_at: EpochMillis;
    scan_verdict: string | null;
    scan_rules_version: string | null;
    scanned_at: EpochMillis | null;
    quarantined: Flag;
    quarantine_reason: string | null;
    quarantined_by: string | null;
    quarantined_at: EpochMillis | null;
  };
  registry_datasets: { id: string; name: string; created_by: string; created_at: EpochMillis };
  registry_dataset_versions: {
    id: string;
    dataset_id: string;
    version: string;
    digest: string;
    size: number;
    file_count: number;
    sensitivity: string;
    owner: string;
    description: string | null;
    created_by: string;
    created_at: EpochMillis;
    scan_verdict: string | null;
    scan_rules_version: string | null;
    scanned_at: EpochMillis | null;
  };
  registry_files: {
    subject_kind: string;
    subject_id: string;
    path: string;
    sha256: string;
    size: number;
    format: string;
    blob_id: string;
  };
  registry_scans: {
    subject_kind: string;
    subject_id: string;
    path: string;
    verdict: string;
    findings: string;
    rules_version: string;
    format: string;
    scanned_at: EpochMillis;
  };
  registry_lineage: {
    model_version_id: string;
    dataset_digest: string;
    dataset_name: string | null;
    dataset_version: string | null;
    dataset_version_id: string | null;
  };
  registry_signatures: {
    id: string;
    subject_kind: string;
    subject_id: string;
    bundle: string;
    signer_identity: string;
    signed_by: string;
    signed_at: EpochMillis;
    verified_at: EpochMillis | null;
    verified_with: string | null;
  };
  registry_stages: {
    model_id: string;
    stage: string;
    version_id: string;
    promoted_by: string;
    promoted_at: EpochMillis;
  };
  registry_approvals: {
    id: string;
    version_id: string;
    stage: string;
    requested_by: string;
    requested_at: EpochMillis;
    status: string;
    approved_by: string | null;
    approved_at: EpochMillis | null;
  };
  registry_waivers: {
    id: string;
    version_id: string;
    reason: string;
    covers_verdict: string;
    rules_version: string;
    waived_by: string;
    waived_at: EpochMillis;
    expires_at: EpochMillis | null;
  };
  registry_changes: {
    seq: Generated<number>;
    kind: string;
    model: string;
    version: string | null;
    at: EpochMillis;
  };
}

export const REGISTRY_MIGRATIONS: readonly Migration[] = [
  {
    id: 'registry/0001-initial',
    async up(db: Kysely<unknown>, dialect: StoreDialect) {
      const t = columnTypes(dialect);
      await db.schema
        .createTable('registry_models')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('name', 'text', (c) => c.notNull().unique())
        .addColumn('owner', 'text')
        .addColumn('description', 'text')
        .addColumn('created_by', 'text', (c) => c.notNull())
        .addColumn('created_at', t.epochMillis, (c) => c.notNull())
        .addColumn('quarantined', t.flag, (c) => c.notNull().defaultTo(0).check(flagCheck('quarantined')))
        .addColumn('quarantine_reason', 'text')
        .addColumn('quarantined_by', 'text')
        .addColumn('quarantined_at', t.epochMillis)
        .execute();
      await db.schema
        .createTable('registry_model_versions')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('model_id', 'text', (c) => c.notNull().references('registry_models.id'))
        .addColumn('version', 'text', (c) => c.notNull())
        .addColumn('digest', 'text', (c) => c.notNull())
        .addColumn('size', t.int64, (c) => c.notNull())
        .addColumn('file_count', 'integer', (c) => c.notNull())
        .addColumn('format', 'text', (c) => c.notNull())
        .addColumn('description', 'text')
        .addColumn('framework', 'text')
        .addColumn('license', 'text')
        .addColumn('code_commit', 'text')
        .addColumn('code_repository', 'text')
        .addColumn('parameters', 'text', (c) => c.notNull())
        .addColumn('parent_version_id', 'text', (c) => c.references('registry_model_versions.id'))
        .addColumn('created_by', 'text', (c) => c.notNull())
        .addColumn('created_at', t.epochMillis, (c) => c.notNull())
        .addColumn('scan_verdict', 'text')
        .addColumn('scan_rules_version', 'text')
        .addColumn('scanned_at', t.epochMillis)
        .addColumn('quarantined', t.flag, (c) => c.notNull().defaultTo(0).check(flagCheck('quarantined')))
        .addColumn('quarantine_reason', 'text')
        .addColumn('quarantined_by', 'text')
        .addColumn('quarantined_at', t.epochMillis)
        .addUniqueConstraint('registry_model_versions_label', ['model_id', 'version'])
        .addUniqueConstraint('registry_model_versions_digest', ['model_id', 'digest'])
        .execute();
      await db.schema
        .createIndex('registry_model_versions_rules')
        .on('registry_model_versions')
        .column('scan_rules_version')
        .execute();
      await db.schema
        .createTable('registry_datasets')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('name', 'text', (c) => c.notNull().unique())
        .addColumn('created_by', 'text', (c) => c.notNull())
        .addColumn('created_at', t.epochMillis, (c) => c.notNull())
        .execute();
      await db.schema
        .createTable('registry_dataset_versions')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('dataset_id', 'text', (c) => c.notNull().references('registry_datasets.id'))
        .addColumn('version', 'text', (c) => c.notNull())
        .addColumn('digest', 'text', (c) => c.notNull())
        .addColumn('size', t.int64, (c) => c.notNull())
        .addColumn('file_count', 'integer', (c) => c.notNull())
        .addColumn('sensitivity', 'text', (c) => c.notNull())
        .addColumn('owner', 'text', (c) => c.notNull())
        .addColumn('description', 'text')
        .addColumn('created_by', 'text', (c) => c.notNull())
        .addColumn('created_at', t.epochMillis, (c) => c.notNull())
        .addColumn('scan_verdict', 'text')
        .addColumn('scan_rules_version', 'text')
        .addColumn('scanned_at', t.epochMillis)
        .addUniqueConstraint('registry_dataset_versions_label', ['dataset_id', 'version'])
        .execute();
      await db.schema
        .createIndex('registry_dataset_versions_digest')
        .on('registry_dataset_versions')
        .column('digest')
        .execute();
      await db.schema
        .createTable('registry_files')
        .addColumn('subject_kind', 'text', (c) => c.notNull())
        .addColumn('subject_id', 'text', (c) => c.notNull())
        .addColumn('path', 'text', (c) => c.notNull())
        .addColumn('sha256', 'text', (c) => c.notNull())
        .addColumn('size', t.int64, (c) => c.notNull())
        .addColumn('format', 'text', (c) => c.notNull())
        .addColumn('blob_id', 'text', (c) => c.notNull())
        .addPrimaryKeyConstraint('registry_files_pk', ['subject_kind', 'subject_id', 'path'])
        .execute();
      await db.schema
        .createTable('registry_scans')
        .addColumn('subject_kind', 'text', (c) => c.notNull())
        .addColumn('subject_id', 'text', (c) => c.notNull())
        .addColumn('path', 'text', (c) => c.notNull())
        .addColumn('verdict', 'text', (c) => c.notNull())
        .addColumn('findings', 'text', (c) => c.notNull())
        .addColumn('rules_version', 'text', (c) => c.notNull())
        .addColumn('format', 'text', (c) => c.notNull())
        .addColumn('scanned_at', t.epochMillis, (c) => c.notNull())
        .addPrimaryKeyConstraint('registry_scans_pk', ['subject_kind', 'subject_id', 'path'])
        .execute();
      await db.schema
        .createTable('registry_lineage')
        .addColumn('model_version_id', 'text', (c) => c.notNull().references('registry_model_versions.id'))
        .addColumn('dataset_digest', 'text', (c) => c.notNull())
        .addColumn('dataset_name', 'text')
        .addColumn('dataset_version', 'text')
        .addColumn('dataset_version_id', 'text', (c) => c.references('registry_dataset_versions.id'))
        .addPrimaryKeyConstraint('registry_lineage_pk', ['model_version_id', 'dataset_digest'])
        .execute();
      await db.schema
        .createIndex('registry_lineage_dataset')
        .on('registry_lineage')
        .column('dataset_digest')
        .execute();
      await db.schema
        .createTable('registry_signatures')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('subject_kind', 'text', (c) => c.notNull())
        .addColumn('subject_id', 'text', (c) => c.notNull())
        .addColumn('bundle', 'text', (c) => c.notNull())
        .addColumn('signer_identity', 'text', (c) => c.notNull())
        .addColumn('signed_by', 'text', (c) => c.notNull())
        .addColumn('signed_at', t.epochMillis, (c) => c.notNull())
        .addColumn('verified_at', t.epochMillis)
        .addColumn('verified_with', 'text')
        .execute();
      await db.schema
        .createIndex('registry_signatures_subject')
        .on('registry_signatures')
        .columns(['subject_kind', 'subject_id', 'signed_at'])
        .execute();
      await db.schema
        .createTable('registry_stages')
        .addColumn('model_id', 'text', (c) => c.notNull().references('registry_models.id'))
        .addColumn('stage', 'text', (c) => c.notNull())
        .addColumn('version_id', 'text', (c) => c.notNull().references('registry_model_versions.id'))
        .addColumn('promoted_by', 'text', (c) => c.notNull())
        .addColumn('promoted_at', t.epochMillis, (c) => c.notNull())
        .addPrimaryKeyConstraint('registry_stages_pk', ['model_id', 'stage'])
        .execute();
      await db.schema
        .createTable('registry_approvals')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('version_id', 'text', (c) => c.notNull().references('registry_model_versions.id'))
        .addColumn('stage', 'text', (c) => c.notNull())
        .addColumn('requested_by', 'text', (c) => c.notNull())
        .addColumn('requested_at', t.epochMillis, (c) => c.notNull())
        .addColumn('status', 'text', (c) => c.notNull())
        .addColumn('approved_by', 'text')
        .addColumn('approved_at', t.epochMillis)
        .execute();
      await db.schema
        .createIndex('registry_approvals_version')
        .on('registry_approvals')
        .columns(['version_id', 'stage', 'status'])
        .execute();
      await db.schema
        .createTable('registry_waivers')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('version_id', 'text', (c) => c.notNull().references('registry_model_versions.id'))
        .addColumn('reason', 'text', (c) => c.notNull())
        .addColumn('covers_verdict', 'text', (c) => c.notNull())
        .addColumn('rules_version', 'text', (c) => c.notNull())
        .addColumn('waived_by', 'text', (c) => c.notNull())
        .addColumn('waived_at', t.epochMillis, (c) => c.notNull())
        .addColumn('expires_at', t.epochMillis)
        .execute();
      await db.schema
        .createIndex('registry_waivers_version')
        .on('registry_waivers')
        .column('version_id')
        .execute();
      await db.schema
        .createTable('registry_changes')
        .addColumn('seq', t.autoIncrementId, (c) => c.primaryKey())
        .addColumn('kind', 'text', (c) => c.notNull())
        .addColumn('model', 'text', (c) => c.notNull())
        .addColumn('version', 'text')
        .addColumn('at', t.epochMillis, (c) => c.notNull())
        .execute();
    },
  },
  // New migrations go at the end.
];

type DB = Kysely<RegistrySchema> | Transaction<RegistrySchema>;
type Row<T extends keyof RegistrySchema> = RegistrySchema[T];

function quarantineOf(row: {
  quarantined: Flag;
  quarantine_reason: string | null;
  quarantined_by: string | null;
  quarantined_at: EpochMillis | null;
}): QuarantineState | null {
  return row.quarantined === 1
    ? { reason: row.quarantine_reason ?? '', by: row.quarantined_by ?? '', at: row.quarantined_at ?? 0 }
    : null;
}

function scanOf(row: {
  scan_verdict: string | null;
  scan_rules_version: string | null;
  scanned_at: EpochMillis | null;
}): ScanSummary {
  return {
    verdict: row.scan_verdict as Verdict | null,
    rulesVersion: row.scan_rules_version,
    scannedAt: row.scanned_at,
  };
}

/** The quarantine columns of a model or version row; `null` clears them. */
function quarantineColumns(state: QuarantineState | null) {
  const quarantined: Flag = state === null ? 0 : 1;
  return {
    quarantined,
    quarantine_reason: state?.reason ?? null,
    quarantined_by: state?.by ?? null,
    quarantined_at: state?.at ?? null,
  };
}

function scanColumns(scan: ScanSummary) {
  return { scan_verdict: scan.verdict, scan_rules_version: scan.rulesVersion, scanned_at: scan.scannedAt };
}

/** Code point order, as OMS orders resources (SQL collations differ between the dialects). */
const byPath = (a: { path: string }, b: { path: string }): number =>
  Buffer.compare(Buffer.from(a.path), Buffer.from(b.path));

/** Runs `write` over slices of `rows`: SQLite binds at most 32766 parameters per statement. */
async function inBatches<T>(
  rows: readonly T[],
  write: (batch: readonly T[]) => Promise<unknown>,
): Promise<void> {
  for (let i = 0; i < rows.length; i += 500) await write(rows.slice(i, i + 500));
}

function modelOf(row: Row<'registry_models'>): ModelRecord {
  return {
    id: row.id,
    name: row.name,
    owner: row.owner,
    description: row.description,
    createdBy: row.created_by,
    createdAt: row.created_at,
    quarantine: quarantineOf(row),
  };
}

function signatureOf(row: Row<'registry_signatures'>): SignatureRecord {
  return {
    id: row.id,
    subjectKind: row.subject_kind as SubjectKind,
    subjectId: row.subject_id,
    bundle: row.bundle,
    signerIdentity: row.signer_identity,
    signedBy: row.signed_by,
    signedAt: row.signed_at,
    verifiedAt: row.verified_at,
    verifiedWith: row.verified_with,
  };
}

function waiverOf(row: Row<'registry_waivers'>): WaiverRecord {
  return {
    id: row.id,
    versionId: row.version_id,
    reason: row.reason,
    coversVerdict: row.covers_verdict as Verdict,
    rulesVersion: row.rules_version,
    waivedBy: row.waived_by,
    waivedAt: row.waived_at,
    expiresAt: row.expires_at,
  };
}

function signatureRow(sig: SignatureRecord): Row<'registry_signatures'> {
  return {
    id: sig.id,
    subject_kind: sig.subjectKind,
    subject_id: sig.subjectId,
    bundle: sig.bundle,
    signer_identity: sig.signerIdentity,
    signed_by: sig.signedBy,
    signed_at: sig.signedAt,
    verified_at: sig.verifiedAt,
    verified_with: sig.verifiedWith,
  };
}

function waiverRow(w: WaiverRecord): Row<'registry_waivers'> {
  return {
    id: w.id,
    version_id: w.versionId,
    reason: w.reason,
    covers_verdict: w.coversVerdict,
    rules_version: w.rulesVersion,
    waived_by: w.waivedBy,
    waived_at: w.waivedAt,
    expires_at: w.expiresAt,
  };
}

function approvalOf(
  row: Row<'registry_approvals'> & { model_name: string; version_label: string },
): ApprovalRecord {
  return {
    id: row.id,
    versionId: row.version_id,
    model: row.model_name,
    version: row.version_label,
    stage: row.stage as Stage,
    requestedBy: row.requested_by,
    requestedAt: row.requested_at,
    status: row.status as ApprovalStatus,
    approvedBy: row.approved_by,
    approvedAt: row.approved_at,
  };
}

/** Maps a unique-constraint violation to the registry's ConflictError. */
async function unique<T>(what: string, run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (err) {
    if (err instanceof StoreConflictError) throw new ConflictError(`${what} already exists`);
    throw err;
  }
}

/** What a new model or dataset version records alike: its identity, content and scan. */
interface NewVersion {
  readonly id: string;
  readonly version: string;
  readonly digest: string;
  readonly size: number;
  readonly description: string | null;
  readonly createdBy: string;
  readonly createdAt: number;
  readonly files: readonly FileRecord[];
  readonly scans: readonly ScanRecord[];
  readonly scan: ScanSummary;
}

export interface NewModelVersion extends NewVersion {
  readonly model: string;
  readonly modelOwner: string | null;
  readonly modelDescription: string | null;
  readonly format: FormatName;
  readonly framework: string | null;
  readonly license: string | null;
  readonly codeCommit: string | null;
  readonly codeRepository: string | null;
  readonly parameters: string;
  readonly parentVersionId: string | null;
  readonly datasets: readonly LineageDataset[];
}

export interface NewDatasetVersion extends NewVersion {
  readonly dataset: string;
  readonly sensitivity: Sensitivity;
  readonly owner: string;
}

/** SQL persistence of the registry. Every multi-row write is one transaction. */
export class RegistryRepository {
  readonly store: Store<RegistrySchema>;

  constructor(store: Store<RegistrySchema>) {
    this.store = store;
  }

  static async open(store: Store<RegistrySchema>): Promise<RegistryRepository> {
    await store.migrate(REGISTRY_MIGRATIONS);
    return new RegistryRepository(store);
  }

  get #db(): Kysely<RegistrySchema> {
    return this.store.db;
  }

  // ---- models and versions ----

  async getModel(name: string, db: DB = this.#db): Promise<ModelRecord | undefined> {
    const row = await db
      .selectFrom('registry_models')
      .selectAll()
      .where('name', '=', name)
      .executeTakeFirst();
    return row === undefined ? undefined : modelOf(row);
  }

  async listModels(): Promise<ModelRecord[]> {
    const rows = await this.#db.selectFrom('registry_models').selectAll().orderBy('name').execute();
    return rows.map(modelOf);
  }

  async insertModelVersion(v: NewModelVersion, modelIdIfNew: string): Promise<void> {
    await unique(`model version ${v.model}@${v.version} (or the same content under another version)`, () =>
      this.store.transaction(async (trx) => {
        let model = await this.getModel(v.model, trx);
        if (model === undefined) {
          await trx
            .insertInto('registry_models')
            .values({
              id: modelIdIfNew,
              name: v.model,
              owner: v.modelOwner,
              description: v.modelDescription,
              created_by: v.createdBy,
              created_at: v.createdAt,
              ...quarantineColumns(null),
            })
            .execute();
          model = await this.getModel(v.model, trx);
        }
        if (model === undefined) throw new Error('model row vanished inside its transaction');
        await trx
          .insertInto('registry_model_versions')
          .values({
            id: v.id,
            model_id: model.id,
            version: v.version,
            digest: v.digest,
            size: v.size,
            file_count: v.files.length,
            format: v.format,
            description: v.description,
            framework: v.framework,
            license: v.license,
            code_commit: v.codeCommit,
            code_repository: v.codeRepository,
            parameters: v.parameters,
            parent_version_id: v.parentVersionId,
            created_by: v.createdBy,
            created_at: v.createdAt,
            ...scanColumns(v.scan),
            ...quarantineColumns(null),
          })
          .execute();
        await this.#insertFiles(trx, 'model', v.id, v.files, v.scans);
        for (const d of v.datasets) {
          await trx
            .insertInto('registry_lineage')
            .values({
              model_version_id: v.id,
              dataset_digest: d.digest,
              dataset_name: d.name,
              dataset_version: d.version,
              dataset_version_id: d.datasetVersionId,
            })
            .execute();
        }
      }),
    );
  }

  async #insertFiles(
    trx: Transaction<RegistrySchema>,
    kind: SubjectKind,
    id: string,
    files: readonly FileRecord[],
    scans: readonly ScanRecord[],
  ): Promise<void> {
    // A dataset can have thousands of files.
    await inBatches(files, (batch) =>
      trx
        .insertInto('registry_files')
        .values(
          batch.map((f) => ({
            subject_kind: kind,
            subject_id: id,
            path: f.path,
            sha256: f.sha256,
            size: f.size,
            format: f.format,
            blob_id: f.blobId,
          })),
        )
        .execute(),
    );
    await this.#writeScans(trx, kind, id, scans);
  }

  async #writeScans(
    trx: Transaction<RegistrySchema>,
    kind: SubjectKind,
    id: string,
    scans: readonly ScanRecord[],
  ): Promise<void> {
    await trx
      .deleteFrom('registry_scans')
      .where('subject_kind', '=', kind)
      .where('subject_id', '=', id)
      .execute();
    await inBatches(scans, (batch) =>
      trx
        .insertInto('registry_scans')
        .values(
          batch.map((s) => ({
            subject_kind: kind,
            subject_id: id,
            path: s.path,
            verdict: s.verdict,
            findings: JSON.stringify(s.findings),
            rules_version: s.rulesVersion,
            format: s.format,
            scanned_at: s.scannedAt,
          })),
        )
        .execute(),
    );
  }

  #modelVersionRows(db: DB) {
    return db
      .selectFrom('registry_model_versions as v')
      .innerJoin('registry_models as m', 'm.id', 'v.model_id')
      .selectAll('v')
      .select(['m.name as model_name']);
  }

  async #toModelVersion(
    row: Row<'registry_model_versions'> & { model_name: string },
  ): Promise<ModelVersionRecord> {
    const datasets = await this.#db
      .selectFrom('registry_lineage')
      .selectAll()
      .where('model_version_id', '=', row.id)
      .orderBy('dataset_digest')
      .execute();
    let parent: Lineage['parent'] = null;
    if (row.parent_version_id !== null) {
      const p = await this.#modelVersionRows(this.#db)
        .where('v.id', '=', row.parent_version_id)
        .executeTakeFirst();
      if (p !== undefined) parent = { model: p.model_name, version: p.version, digest: p.digest };
    }
    return {
      id: row.id,
      modelId: row.model_id,
      model: row.model_name,
      version: row.version,
      digest: row.digest,
      size: row.size,
      fileCount: row.file_count,
      format: row.format as FormatName,
      description: row.description,
      framework: row.framework,
      license: row.license,
      lineage: {
        datasets: datasets.map((d) => ({
          digest: d.dataset_digest,
          name: d.dataset_name,
          version: d.dataset_version,
          datasetVersionId: d.dataset_version_id,
        })),
        codeCommit: row.code_commit,
        codeRepository: row.code_repository,
        parameters: JSON.parse(row.parameters) as Lineage['parameters'],
        parent,
      },
      createdBy: row.created_by,
      createdAt: row.created_at,
      scan: scanOf(row),
      quarantine: quarantineOf(row),
    };
  }

  async getModelVersion(model: string, version: string): Promise<ModelVersionRecord | undefined> {
    const row = await this.#modelVersionRows(this.#db)
      .where('m.name', '=', model)
      .where('v.version', '=', version)
      .executeTakeFirst();
    return row === undefined ? undefined : this.#toModelVersion(row);
  }

  async getModelVersionById(id: string): Promise<ModelVersionRecord | undefined> {
    const row = await this.#modelVersionRows(this.#db).where('v.id', '=', id).executeTakeFirst();
    return row === undefined ? undefined : this.#toModelVersion(row);
  }

  async listModelVersions(model: string): Promise<ModelVersionRecord[]> {
    const rows = await this.#modelVersionRows(this.#db)
      .where('m.name', '=', model)
      .orderBy('v.created_at')
      .orderBy('v.version')
      .execute();
    return Promise.all(rows.map((r) => this.#toModelVersion(r)));
  }

  /** Versions whose last scan used other rules (or that were never scanned). */
  async outdatedScans(rulesVersion: string): Promise<{ kind: SubjectKind; id: string }[]> {
    const outdated = async (
      kind: SubjectKind,
      table: 'registry_model_versions' | 'registry_dataset_versions',
    ) => {
      const rows = await this.#db
        .selectFrom(table)
        .select('id')
        .where((eb) =>
          eb.or([eb('scan_rules_version', '!=', rulesVersion), eb('scan_rules_version', 'is', null)]),
        )
        .orderBy('created_at')
        .execute();
      return rows.map((r) => ({ kind, id: r.id }));
    };
    return [
      ...(await outdated('model', 'registry_model_versions')),
      ...(await outdated('dataset', 'registry_dataset_versions')),
    ];
  }

  // ---- files and scans ----

  async files(kind: SubjectKind, id: string): Promise<FileRecord[]> {
    const rows = await this.#db
      .selectFrom('registry_files')
      .selectAll()
      .where('subject_kind', '=', kind)
      .where('subject_id', '=', id)
      .execute();
    return rows
      .map((r) => ({
        path: r.path,
        sha256: r.sha256,
        size: r.size,
        format: r.format as FormatName,
        blobId: r.blob_id,
      }))
      .sort(byPath);
  }

  async scans(kind: SubjectKind, id: string): Promise<ScanRecord[]> {
    const rows = await this.#db
      .selectFrom('registry_scans')
      .selectAll()
      .where('subject_kind', '=', kind)
      .where('subject_id', '=', id)
      .execute();
    return rows
      .map((r) => ({
        path: r.path,
        verdict: r.verdict as Verdict,
        findings: JSON.parse(r.findings) as Finding[],
        rulesVersion: r.rules_version,
        format: r.format as FormatName,
        scannedAt: r.scanned_at,
      }))
      .sort(byPath);
  }

  async replaceScans(
    kind: SubjectKind,
    id: string,
    scans: readonly ScanRecord[],
    summary: ScanSummary,
    change: { model: string; version: string | null; at: number } | undefined,
  ): Promise<void> {
    await this.store.transaction(async (trx) => {
      await this.#writeScans(trx, kind, id, scans);
      const values = scanColumns(summary);
      if (kind === 'model') {
        await trx.updateTable('registry_model_versions').set(values).where('id', '=', id).execute();
      } else {
        await trx.updateTable('registry_dataset_versions').set(values).where('id', '=', id).execute();
      }
      if (change !== undefined) await this.#change(trx, 'scan', change.model, change.version, change.at);
    });
  }

  // ---- datasets ----

  async insertDatasetVersion(v: NewDatasetVersion, datasetIdIfNew: string): Promise<void> {
    await unique(`dataset version ${v.dataset}@${v.version}`, () =>
      this.store.transaction(async (trx) => {
        let dataset = await trx
          .selectFrom('registry_datasets')
          .selectAll()
          .where('name', '=', v.dataset)
          .executeTakeFirst();
        if (dataset === undefined) {
          dataset = { id: datasetIdIfNew, name: v.dataset, created_by: v.createdBy, created_at: v.createdAt };
          await trx.insertInto('registry_datasets').values(dataset).execute();
        }
        await trx
          .insertInto('registry_dataset_versions')
          .values({
            id: v.id,
            dataset_id: dataset.id,
            version: v.version,
            digest: v.digest,
            size: v.size,
            file_count: v.files.length,
            sensitivity: v.sensitivity,
            owner: v.owner,
            description: v.description,
            created_by: v.createdBy,
            created_at: v.createdAt,
            ...scanColumns(v.scan),
          })
          .execute();
        await this.#insertFiles(trx, 'dataset', v.id, v.files, v.scans);
      }),
    );
  }

  #datasetVersionRows(db: DB) {
    return db
      .selectFrom('registry_dataset_versions as v')
      .innerJoin('registry_datasets as d', 'd.id', 'v.dataset_id')
      .selectAll('v')
      .select(['d.name as dataset_name']);
  }

  static #toDatasetVersion(
    row: Row<'registry_dataset_versions'> & { dataset_name: string },
  ): DatasetVersionRecord {
    return {
      id: row.id,
      datasetId: row.dataset_id,
      dataset: row.dataset_name,
      version: row.version,
      digest: row.digest,
      size: row.size,
      fileCount: row.file_count,
      sensitivity: row.sensitivity as Sensitivity,
      owner: row.owner,
      description: row.description,
      createdBy: row.created_by,
      createdAt: row.created_at,
      scan: scanOf(row),
    };
  }

  async getDatasetVersion(dataset: string, version: string): Promise<DatasetVersionRecord | undefined> {
    const row = await this.#datasetVersionRows(this.#db)
      .where('d.name', '=', dataset)
      .where('v.version', '=', version)
      .executeTakeFirst();
    return row === undefined ? undefined : RegistryRepository.#toDatasetVersion(row);
  }

  async getDatasetVersionById(id: string): Promise<DatasetVersionRecord | undefined> {
    const row = await this.#datasetVersionRows(this.#db).where('v.id', '=', id).executeTakeFirst();
    return row === undefined ? undefined : RegistryRepository.#toDatasetVersion(row);
  }

  async datasetVersionsByDigest(digest: string): Promise<DatasetVersionRecord[]> {
    const rows = await this.#datasetVersionRows(this.#db).where('v.digest', '=', digest).execute();
    return rows.map((r) => RegistryRepository.#toDatasetVersion(r));
  }

  async listDatasetVersions(dataset: string): Promise<DatasetVersionRecord[]> {
    const rows = await this.#datasetVersionRows(this.#db)
      .where('d.name', '=', dataset)
      .orderBy('v.created_at')
      .orderBy('v.version')
      .execute();
    return rows.map((r) => RegistryRepository.#toDatasetVersion(r));
  }

  async listDatasets(): Promise<string[]> {
    const rows = await this.#db.selectFrom('registry_datasets').select('name').orderBy('name').execute();
    return rows.map((r) => r.name);
  }

  // ---- lineage ----

  /** Model versions whose lineage names a training dataset with this digest. */
  async versionsTrainedOn(digest: string): Promise<ModelVersionRecord[]> {
    const rows = await this.#modelVersionRows(this.#db)
      .innerJoin('registry_lineage as l', 'l.model_version_id', 'v.id')
      .where('l.dataset_digest', '=', digest)
      .orderBy('v.created_at')
      .execute();
    return Promise.all(rows.map((r) => this.#toModelVersion(r)));
  }

  /** Versions derived (directly) from this one. */
  async children(versionId: string): Promise<ModelVersionRecord[]> {
    const rows = await this.#modelVersionRows(this.#db)
      .where('v.parent_version_id', '=', versionId)
      .orderBy('v.created_at')
      .execute();
    return Promise.all(rows.map((r) => this.#toModelVersion(r)));
  }

  async parentId(versionId: string): Promise<string | null> {
    const row = await this.#db
      .selectFrom('registry_model_versions')
      .select('parent_version_id')
      .where('id', '=', versionId)
      .executeTakeFirst();
    return row?.parent_version_id ?? null;
  }

  // ---- signatures ----

  async addSignature(sig: SignatureRecord, change: { model: string; version: string | null }): Promise<void> {
    await this.store.transaction(async (trx) => {
      await trx.insertInto('registry_signatures').values(signatureRow(sig)).execute();
      if (sig.subjectKind === 'model')
        await this.#change(trx, 'signature', change.model, change.version, sig.signedAt);
    });
  }

  async signatures(kind: SubjectKind, id: string): Promise<SignatureRecord[]> {
    const rows = await this.#db
      .selectFrom('registry_signatures')
      .selectAll()
      .where('subject_kind', '=', kind)
      .where('subject_id', '=', id)
      .orderBy('signed_at', 'desc')
      .orderBy('id')
      .execute();
    return rows.map(signatureOf);
  }

  async markVerified(signatureId: string, at: number, verifiedWith: string | null): Promise<void> {
    await this.#db
      .updateTable('registry_signatures')
      .set({ verified_at: at, verified_with: verifiedWith })
      .where('id', '=', signatureId)
      .execute();
  }

  // ---- stages, approvals, waivers ----

  async setStage(
    modelId: string,
    stage: Stage,
    versionId: string,
    by: string,
    at: number,
    change: { model: string; version: string },
    approvalId?: string,
  ): Promise<void> {
    await this.store.transaction(async (trx) => {
      await trx
        .deleteFrom('registry_stages')
        .where('model_id', '=', modelId)
        .where('stage', '=', stage)
        .execute();
      await trx
        .insertInto('registry_stages')
        .values({ model_id: modelId, stage, version_id: versionId, promoted_by: by, promoted_at: at })
        .execute();
      if (approvalId !== undefined) {
        const updated = await trx
          .updateTable('registry_approvals')
          .set({ status: 'approved', approved_by: by, approved_at: at })
          .where('id', '=', approvalId)
          .where('status', '=', 'pending')
          .executeTakeFirst();
        if (Number(updated.numUpdatedRows) !== 1)
          throw new ConflictError('the approval request is no longer pending');
      }
      await this.#change(trx, 'promote', change.model, change.version, at);
    });
  }

  async stages(modelId: string): Promise<StageRecord[]> {
    const rows = await this.#db
      .selectFrom('registry_stages as s')
      .innerJoin('registry_model_versions as v', 'v.id', 's.version_id')
      .select(['s.stage', 's.version_id', 'v.version', 's.promoted_by', 's.promoted_at'])
      .where('s.model_id', '=', modelId)
      .execute();
    return rows.map((r) => ({
      stage: r.stage as Stage,
      versionId: r.version_id,
      version: r.version,
      promotedBy: r.promoted_by,
      promotedAt: r.promoted_at,
    }));
  }

  async stagesOfVersion(versionId: string): Promise<Stage[]> {
    const rows = await this.#db
      .selectFrom('registry_stages')
      .select('stage')
      .where('version_id', '=', versionId)
      .execute();
    return rows.map((r) => r.stage as Stage);
  }

  /** A pending request for (version, stage), or a new one; older pending requests for the stage are superseded. */
  async requestApproval(a: {
    id: string;
    versionId: string;
    stage: Stage;
    requestedBy: string;
    requestedAt: number;
  }): Promise<string> {
    return this.store.transaction(async (trx) => {
      const existing = await trx
        .selectFrom('registry_approvals')
        .select('id')
        .where('version_id', '=', a.versionId)
        .where('stage', '=', a.stage)
        .where('status', '=', 'pending')
        .executeTakeFirst();
      if (existing !== undefined) return existing.id;
      // Otherwise approving a forgotten request for another version would move the stage back to it.
      await trx
        .updateTable('registry_approvals')
        .set({ status: 'superseded' })
        .where('stage', '=', a.stage)
        .where('status', '=', 'pending')
        .where('version_id', 'in', (q) =>
          q
            .selectFrom('registry_model_versions')
            .select('id')
            .where(
              'model_id',
              '=',
              q.selectFrom('registry_model_versions').select('model_id').where('id', '=', a.versionId),
            ),
        )
        .execute();
      await trx
        .insertInto('registry_approvals')
        .values({
          id: a.id,
          version_id: a.versionId,
          stage: a.stage,
          requested_by: a.requestedBy,
          requested_at: a.requestedAt,
          status: 'pending',
          approved_by: null,
          approved_at: null,
        })
        .execute();
      return a.id;
    });
  }

  #approvalRows() {
    return this.#db
      .selectFrom('registry_approvals as a')
      .innerJoin('registry_model_versions as v', 'v.id', 'a.version_id')
      .innerJoin('registry_models as m', 'm.id', 'v.model_id')
      .selectAll('a')
      .select(['m.name as model_name', 'v.version as version_label']);
  }

  async getApproval(id: string): Promise<ApprovalRecord | undefined> {
    const row = await this.#approvalRows().where('a.id', '=', id).executeTakeFirst();
    return row === undefined ? undefined : approvalOf(row);
  }

  async listApprovals(model: string): Promise<ApprovalRecord[]> {
    const rows = await this.#approvalRows().where('m.name', '=', model).orderBy('a.requested_at').execute();
    return rows.map(approvalOf);
  }

  async addWaiver(w: WaiverRecord): Promise<void> {
    await this.#db.insertInto('registry_waivers').values(waiverRow(w)).execute();
  }

  async waivers(versionId: string): Promise<WaiverRecord[]> {
    const rows = await this.#db
      .selectFrom('registry_waivers')
      .selectAll()
      .where('version_id', '=', versionId)
      .orderBy('waived_at', 'desc')
      .execute();
    return rows.map(waiverOf);
  }

  // ---- quarantine and the change feed ----

  async setQuarantine(
    target: { modelId: string; versionId?: string },
    state: QuarantineState | null,
    change: { model: string; version: string | null; at: number },
  ): Promise<void> {
    await this.store.transaction(async (trx) => {
      const values = quarantineColumns(state);
      if (target.versionId === undefined) {
        await trx.updateTable('registry_models').set(values).where('id', '=', target.modelId).execute();
      } else {
        await trx
          .updateTable('registry_model_versions')
          .set(values)
          .where('id', '=', target.versionId)
          .execute();
      }
      await this.#change(
        trx,
        state === null ? 'release' : 'quarantine',
        change.model,
        change.version,
        change.at,
      );
    });
  }

  async #change(
    trx: Transaction<RegistrySchema>,
    kind: ChangeRecord['kind'],
    model: string,
    version: string | null,
    at: number,
  ): Promise<void> {
    await trx.insertInto('registry_changes').values({ kind, model, version, at }).execute();
  }

  /** The latest change sequence number (0 when none): one indexed read, cheap enough to poll every second. */
  async epoch(): Promise<number> {
    const row = await this.#db
      .selectFrom('registry_changes')
      .select((eb) => eb.fn.max('seq').as('seq'))
      .executeTakeFirst();
    // max() of an empty table is NULL whatever the column type says.
    const seq: unknown = row?.seq;
    return typeof seq === 'number' ? seq : 0;
  }

  async changesSince(seq: number, limit: number): Promise<ChangeRecord[]> {
    const rows = await this.#db
      .selectFrom('registry_changes')
      .selectAll()
      .where('seq', '>', seq)
      .orderBy('seq')
      .limit(limit)
      .execute();
    return rows.map((r) => ({
      seq: r.seq,
      kind: r.kind as ChangeRecord['kind'],
      model: r.model,
      version: r.version,
      at: r.at,
    }));
  }
}

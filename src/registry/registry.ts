import { createHash, randomUUID } from 'node:crypto';
import { constants } from 'node:fs';
import { lstat, open, readdir, rm, rmdir, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import type { AuditEvent, AuditRecorder } from '../audit/index.ts';
import type { Principal } from '../kms/index.ts';
import type { ActionId, AuthzResource } from '../policy/index.ts';
import { RULES_VERSION, scanFile, scanSource } from '../scanner/index.ts';
import type { ByteSource, ScanResult, Verdict } from '../scanner/index.ts';
import {
  ModelSigningError,
  serializeModel,
  signManifest,
  verifyBundle,
  type Manifest,
  type Signer,
  type VerificationTrust,
} from '../signing/index.ts';
import type { ArtifactBinding, ArtifactVault } from './artifacts.ts';
import { buildModelBom } from './bom.ts';
import {
  AuditFailedError,
  ConflictError,
  GateError,
  IntegrityError,
  InvalidInputError,
  NotFoundError,
  RegistryError,
  SelfApprovalError,
  TooLargeError,
  VerificationError,
} from './errors.ts';
import {
  parseArtifactPath,
  parseCommit,
  parseDigest,
  parseName,
  parseParameters,
  parseSensitivity,
  parseStage,
  parseText,
  parseVersion,
  type ParameterValue,
  type Sensitivity,
  type Stage,
} from './names.ts';
import type { RegistryRepository } from './repository.ts';
import type {
  ApprovalRecord,
  ChangeRecord,
  DatasetVersionRecord,
  FileRecord,
  LineageDataset,
  ModelRecord,
  ModelVersionRecord,
  ScanRecord,
  ScanSummary,
  SignatureRecord,
  StageRecord,
  SubjectKind,
  WaiverRecord,
} from './types.ts';
import { CreatedEntries, makeDirectoryDurably, renameDurably } from '../durable/index.ts';

/**
 * The model and dataset registry: every operation takes the caller, is authorised through one injected call-out
 * and audited fail-closed; artifacts are hashed (OMS), scanned, envelope-encrypted under KMS data keys and
 * recorded; promotion is gated on signature, scan and (for prod) a second person. See docs/registry.md.
 */

/** Throws (403-typed) when `principal` may not perform `action` on `resource`. The lead plugs Cedar in here. */
export type RegistryAuthorizer = (
  principal: Principal,
  action: ActionId,
  resource: AuthzResource,
) => Promise<void>;

/** A key or CA the registry accepts signatures from; `id` is recorded with every verification it makes. */
export interface TrustedSigner {
  readonly id: string;
  readonly trust: VerificationTrust;
}

/** Registry signatures come from here: a KMS-held key (kmsModelSigner) in production. */
export type SignerFactory = () => Promise<Signer & { readonly identity: string }>;

/** The scanner as the registry uses it; injectable so a rules upgrade can be exercised. */
export interface RegistryScanner {
  readonly rulesVersion: string;
  scanFile(file: string): Promise<ScanResult>;
  scanSource(source: ByteSource, name: string): Promise<ScanResult>;
}

export const DEFAULT_SCANNER: RegistryScanner = {
  rulesVersion: RULES_VERSION,
  scanFile: (file) => scanFile(file),
  scanSource: (source, name) => scanSource(source, name),
};

export interface RegistryLimits {
  /** Largest single file (bytes). Default 64 GiB. */
  readonly maxFileBytes: number;
  /** Largest version, all files together (bytes). Default 1 TiB. */
  readonly maxVersionBytes: number;
  /** Most files in one version. Default 10,000. */
  readonly maxFiles: number;
}

export const DEFAULT_LIMITS: RegistryLimits = {
  maxFileBytes: 64 * 2 ** 30,
  maxVersionBytes: 2 ** 40,
  maxFiles: 10_000,
};

export interface RegistryOptions {
  readonly repository: RegistryRepository;
  readonly vault: ArtifactVault;
  readonly audit: AuditRecorder;
  readonly authorize: RegistryAuthorizer;
  readonly trustedSigners: readonly TrustedSigner[];
  readonly signer: SignerFactory;
  /** Where uploads are staged before finalize (plaintext: keep it on the server's private data volume). */
  readonly stagingDir: string;
  readonly scanner?: RegistryScanner;
  readonly limits?: Partial<RegistryLimits>;
  /** Files scanned and stored in parallel. Default 2. */
  readonly concurrency?: number;
  /** Hash worker threads (signing module). Default: one per core, at most 8. */
  readonly hashConcurrency?: number;
  readonly now?: () => number;
}

export interface ModelMetadata {
  readonly description?: string;
  readonly framework?: string;
  readonly license?: string;
  /** Owner recorded on the model when this is its first version. */
  readonly owner?: string;
}

/** A training dataset: a registered dataset version, or an external one known only by its digest. */
export type DatasetReference =
  | { readonly name: string; readonly version: string }
  | { readonly digest: string; readonly name?: string; readonly version?: string };

export interface LineageInput {
  readonly datasets?: readonly DatasetReference[];
  readonly codeCommit?: string;
  readonly codeRepository?: string;
  readonly parameters?: Readonly<Record<string, ParameterValue>>;
  /** Parent version; `model` defaults to the model being registered. */
  readonly parent?: { readonly model?: string; readonly version: string };
}

export interface DatasetMetadata {
  readonly sensitivity: Sensitivity;
  readonly owner: string;
  readonly description?: string;
}

export interface VerifyResult {
  readonly signatureId: string;
  readonly signerIdentity: string;
  readonly verifiedWith: string;
  readonly verifiedAt: number;
  /** Files decrypted and re-hashed (deep verification); 0 when only the bundle and the records were checked. */
  readonly filesChecked: number;
}

export type PromotionResult =
  | { readonly status: 'promoted'; readonly stage: Stage; readonly version: string }
  | { readonly status: 'pending_approval'; readonly stage: Stage; readonly approvalId: string };

export interface Servability {
  readonly servable: boolean;
  /** Why not (stable words: not_found, not_deployed, unsigned, unverified, scan_not_clean, quarantined). */
  readonly reasons: readonly string[];
  readonly digest?: string;
  readonly stages?: readonly Stage[];
}

export interface Ancestry {
  readonly version: ModelVersionRecord;
  /** Parent first, then its parent... (cycle-safe, bounded). */
  readonly ancestors: readonly ModelVersionRecord[];
  readonly children: readonly ModelVersionRecord[];
}

const VERDICT_RANK: Readonly<Record<Verdict, number>> = { clean: 0, suspicious: 1, error: 2, malicious: 3 };
const OMS_DEFAULT_IGNORES = ['.git', '.gitattributes', '.github', '.gitignore'];
const MAX_ANCESTRY = 64;
const RECORDED_FINDINGS = 200;

function worst(verdicts: readonly Verdict[]): Verdict {
  return verdicts.reduce<Verdict>((a, b) => (VERDICT_RANK[b] > VERDICT_RANK[a] ? b : a), 'clean');
}

function compareCodePoints(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  let failed: unknown;
  const worker = async (): Promise<void> => {
    while (failed === undefined && next < items.length) {
      const i = next++;
      try {
        out[i] = await fn(items[i] as T);
      } catch (err) {
        failed ??= { err };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
  if (failed !== undefined) throw (failed as { err: unknown }).err;
  return out;
}

function scanRecord(pathName: string, result: ScanResult, at: number): ScanRecord {
  return {
    path: pathName,
    verdict: result.verdict,
    // Bounded: a hostile archive can produce very many findings; the verdict already reflects all of them.
    findings: result.findings.slice(0, RECORDED_FINDINGS),
    rulesVersion: result.rulesVersion,
    format: result.format,
    scannedAt: at,
  };
}

function versionResource(
  model: string,
  version: string,
  attrs: { stage: string; signed?: boolean },
): AuthzResource {
  return { type: 'ModelVersion', id: `${model}@${version}`, model, attrs };
}

function datasetResource(name: string, sensitivity: Sensitivity, owner?: string): AuthzResource {
  return { type: 'Dataset', id: name, attrs: { sensitivity, ...(owner === undefined ? {} : { owner }) } };
}

interface Subject {
  readonly kind: SubjectKind;
  readonly id: string;
  readonly name: string;
  readonly version: string;
  readonly digest: string;
}

export class Registry {
  readonly #repo: RegistryRepository;
  readonly #vault: ArtifactVault;
  readonly #audit: AuditRecorder;
  readonly #authorize: RegistryAuthorizer;
  readonly #trusted: readonly TrustedSigner[];
  readonly #signer: SignerFactory;
  readonly #staging: string;
  readonly #scanner: RegistryScanner;
  readonly #limits: RegistryLimits;
  readonly #concurrency: number;
  readonly #hashConcurrency: number | undefined;
  readonly #now: () => number;

  constructor(options: RegistryOptions) {
    const ids = new Set<string>();
    for (const t of options.trustedSigners) {
      if (t.id.length === 0 || ids.has(t.id))
        throw new InvalidInputError('trusted signer ids must be unique');
      ids.add(t.id);
    }
    this.#repo = options.repository;
    this.#vault = options.vault;
    this.#audit = options.audit;
    this.#authorize = options.authorize;
    this.#trusted = options.trustedSigners;
    this.#signer = options.signer;
    this.#staging = path.resolve(options.stagingDir);
    this.#scanner = options.scanner ?? DEFAULT_SCANNER;
    this.#limits = { ...DEFAULT_LIMITS, ...options.limits };
    this.#concurrency = options.concurrency ?? 2;
    this.#hashConcurrency = options.hashConcurrency;
    this.#now = options.now ?? Date.now;
  }

  get limits(): RegistryLimits {
    return this.#limits;
  }

  get rulesVersion(): string {
    return this.#scanner.rulesVersion;
  }

  // ---------------------------------------------------------------- plumbing

  async #record(
    principal: Principal,
    event: Omit<AuditEvent, 'principal' | 'requestId' | 'sourceIp' | 'userAgent'>,
  ): Promise<void> {
    const r = principal.request;
    try {
      await this.#audit.record({
        ...event,
        principal: { id: principal.id, authMethod: principal.authMethod },
        ...(r?.id === undefined ? {} : { requestId: r.id }),
        ...(r?.sourceIp === undefined ? {} : { sourceIp: r.sourceIp }),
        ...(r?.userAgent === undefined ? {} : { userAgent: r.userAgent }),
      });
    } catch (err) {
      throw new AuditFailedError({ cause: err });
    }
  }

  /**
   * Authorise, run, audit. A denial and a failure are audited too; when the success event cannot be recorded
   * the result is withheld (AuditFailedError), as the KMS does.
   */
  async #run<T>(
    principal: Principal,
    action: ActionId,
    resource: AuthzResource | (() => Promise<AuthzResource>),
    fn: () => Promise<T>,
    details?: (result: T) => Readonly<Record<string, string | number | boolean>>,
  ): Promise<T> {
    const started = this.#now();
    let target: AuthzResource;
    try {
      target = typeof resource === 'function' ? await resource() : resource;
    } catch (err) {
      await this.#record(principal, {
        action: `registry.${action}`,
        resource: 'unknown',
        outcome: 'failure',
        reason: err instanceof RegistryError ? err.code : 'internal',
      });
      throw err;
    }
    const resourceName = `${target.type}:${target.id}`;
    try {
      await this.#authorize(principal, action, target);
    } catch (err) {
      await this.#record(principal, {
        action: `registry.${action}`,
        resource: resourceName,
        outcome: 'denied',
        reason: 'forbidden',
      });
      throw err;
    }
    let result: T;
    try {
      result = await fn();
    } catch (err) {
      await this.#record(principal, {
        action: `registry.${action}`,
        resource: resourceName,
        outcome: 'failure',
        reason:
          err instanceof RegistryError
            ? err.code
            : err instanceof ModelSigningError
              ? 'signing_error'
              : 'internal',
        latencyMs: this.#now() - started,
      });
      throw err;
    }
    await this.#record(principal, {
      action: `registry.${action}`,
      resource: resourceName,
      outcome: 'success',
      latencyMs: this.#now() - started,
      ...(details === undefined ? {} : { details: details(result) }),
    });
    return result;
  }

  async #model(name: string): Promise<ModelRecord> {
    const model = await this.#repo.getModel(name);
    if (model === undefined) throw new NotFoundError(`model ${name}`);
    return model;
  }

  async #modelVersion(model: string, version: string): Promise<ModelVersionRecord> {
    const v = await this.#repo.getModelVersion(parseName(model, 'model name'), parseVersion(version));
    if (v === undefined) throw new NotFoundError(`model version ${model}@${version}`);
    return v;
  }

  async #datasetVersion(dataset: string, version: string): Promise<DatasetVersionRecord> {
    const v = await this.#repo.getDatasetVersion(parseName(dataset, 'dataset name'), parseVersion(version));
    if (v === undefined) throw new NotFoundError(`dataset version ${dataset}@${version}`);
    return v;
  }

  /** Cedar attributes of a stored version: the highest stage it is deployed to ('none'), whether signed. */
  async #versionAttrs(v: ModelVersionRecord): Promise<{ stage: string; signed: boolean }> {
    const stages = await this.#repo.stagesOfVersion(v.id);
    const stage = (['prod', 'staging', 'dev'] as const).find((s) => stages.includes(s)) ?? 'none';
    const signed = (await this.#repo.signatures('model', v.id)).some((s) => s.verifiedWith !== null);
    return { stage, signed };
  }

  async #versionResource(model: string, version: string, stage?: Stage): Promise<AuthzResource> {
    const v = await this.#modelVersion(model, version);
    const attrs = await this.#versionAttrs(v);
    return versionResource(v.model, v.version, stage === undefined ? attrs : { ...attrs, stage });
  }

  async #datasetResourceOf(dataset: string, version: string): Promise<AuthzResource> {
    const d = await this.#datasetVersion(dataset, version);
    return datasetResource(d.dataset, d.sensitivity, d.owner);
  }

  /**
   * The policy resource of a registry object, with the attributes the registry itself authorises with (for the
   * HTTP layer's route-level check): a version that does not exist yet is `stage: 'none'`, unsigned; a
   * dataset version that does not exist yet carries the sensitivity the caller declares (default restricted).
   */
  async resourceOf(
    target:
      | { readonly model: string; readonly version?: string; readonly stage?: Stage }
      | { readonly dataset: string; readonly version?: string; readonly sensitivity?: Sensitivity },
  ): Promise<AuthzResource> {
    if ('model' in target) {
      const model = parseName(target.model, 'model name');
      if (target.version === undefined) return { type: 'Model', id: model };
      const version = parseVersion(target.version);
      const v = await this.#repo.getModelVersion(model, version);
      const attrs = v === undefined ? { stage: 'none', signed: false } : await this.#versionAttrs(v);
      return versionResource(
        model,
        version,
        target.stage === undefined ? attrs : { ...attrs, stage: target.stage },
      );
    }
    const dataset = parseName(target.dataset, 'dataset name');
    const d =
      target.version === undefined
        ? undefined
        : await this.#repo.getDatasetVersion(dataset, parseVersion(target.version));
    return d === undefined
      ? datasetResource(dataset, target.sensitivity ?? 'restricted')
      : datasetResource(d.dataset, d.sensitivity, d.owner);
  }

  /** The resource an approval request is about (its version, at the requested stage). */
  /**
   * The resource an approval acts on. An unknown approval id resolves to the model named in the request, so the
   * policy decides before anyone learns whether the id exists (the approval itself then answers 404).
   */
  async approvalResource(approvalId: string, model: string): Promise<AuthzResource> {
    const approval = /^[0-9a-f-]{36}$/.test(approvalId)
      ? await this.#repo.getApproval(approvalId)
      : undefined;
    // Approvals only ever gate promotions to prod: judge an unknown one as such.
    if (approval === undefined) {
      return { type: 'ModelVersion', id: `${model}@?`, model, attrs: { stage: 'prod' } };
    }
    return this.resourceOf({ model: approval.model, version: approval.version, stage: approval.stage });
  }

  // ---------------------------------------------------------------- ingest

  /**
   * Hashes (OMS `files`, SHA-256), scans and encrypts every file of `dir`. Blobs written before a failure are
   * removed again. Returns the records to persist.
   */
  /** Records an ingested version; when that fails its blobs are removed again, so none is left orphaned. */
  async #recordIngested(files: readonly FileRecord[], record: () => Promise<unknown>): Promise<void> {
    try {
      await record();
    } catch (err) {
      await Promise.all(files.map((f) => this.#vault.blobs.delete(f.blobId).catch(() => undefined)));
      throw err;
    }
  }

  async #ingest(
    dir: string,
    kind: SubjectKind,
    name: string,
    version: string,
  ): Promise<{ digest: string; size: number; files: FileRecord[]; scans: ScanRecord[]; scan: ScanSummary }> {
    const st = await lstat(dir).catch(() => undefined);
    if (st === undefined || !st.isDirectory())
      throw new InvalidInputError('the artifact directory does not exist');
    let manifest: Manifest;
    try {
      manifest = await serializeModel(dir, {
        method: 'files',
        hashAlgorithm: 'sha256',
        ...(this.#hashConcurrency === undefined ? {} : { concurrency: this.#hashConcurrency }),
      });
    } catch (err) {
      if (err instanceof ModelSigningError)
        throw new InvalidInputError(`the artifact directory cannot be hashed: ${err.message}`, {
          cause: err,
        });
      throw err;
    }
    const resources = [...manifest.resources].sort((a, b) => compareCodePoints(a.name, b.name));
    if (resources.length > this.#limits.maxFiles) {
      throw new TooLargeError(`more than ${this.#limits.maxFiles} files`);
    }
    const planned = await Promise.all(
      resources.map(async (r) => {
        const rel = parseArtifactPath(r.name);
        const file = path.join(dir, ...rel.split('/'));
        const s = await lstat(file);
        if (!s.isFile()) throw new InvalidInputError(`${JSON.stringify(rel)} is not a regular file`);
        if (s.size > this.#limits.maxFileBytes) {
          throw new TooLargeError(`${JSON.stringify(rel)} is larger than ${this.#limits.maxFileBytes} bytes`);
        }
        return { rel, file, sha256: r.digest, size: s.size };
      }),
    );
    const size = planned.reduce((n, p) => n + p.size, 0);
    if (size > this.#limits.maxVersionBytes) {
      throw new TooLargeError(`the version is larger than ${this.#limits.maxVersionBytes} bytes`);
    }
    // Root digest over the code-point-ordered resources: the OMS subject digest the signature will carry.
    const rootHash = createHash('sha256');
    for (const p of planned) rootHash.update(Buffer.from(p.sha256, 'hex'));
    const digest = rootHash.digest('hex');
    const stored: string[] = [];
    try {
      const results = await mapLimit(planned, this.#concurrency, async (p) => {
        const scan = await this.#scanner.scanFile(p.file);
        const binding: ArtifactBinding = { kind, name, version, root: digest, path: p.rel };
        const { blobId } = await this.#vault.store(p.file, binding, { sha256: p.sha256, size: p.size });
        stored.push(blobId);
        const at = this.#now();
        const file: FileRecord = { path: p.rel, sha256: p.sha256, size: p.size, format: scan.format, blobId };
        return { file, scan: scanRecord(p.rel, scan, at) };
      });
      const scans = results.map((r) => r.scan);
      return {
        digest,
        size,
        files: results.map((r) => r.file),
        scans,
        scan: {
          verdict: worst(scans.map((s) => s.verdict)),
          rulesVersion: this.#scanner.rulesVersion,
          scannedAt: this.#now(),
        },
      };
    } catch (err) {
      await Promise.all(stored.map((id) => this.#vault.blobs.delete(id).catch(() => undefined)));
      throw err;
    }
  }

  async #resolveLineage(
    model: string,
    lineage: LineageInput,
  ): Promise<{
    datasets: LineageDataset[];
    codeCommit: string | null;
    codeRepository: string | null;
    parameters: Record<string, ParameterValue>;
    parentVersionId: string | null;
  }> {
    const datasets = new Map<string, LineageDataset>();
    if ((lineage.datasets?.length ?? 0) > 256) throw new InvalidInputError('at most 256 training datasets');
    for (const ref of lineage.datasets ?? []) {
      if ('digest' in ref) {
        const digest = parseDigest(ref.digest, 'dataset digest');
        const known = (await this.#repo.datasetVersionsByDigest(digest))[0];
        datasets.set(digest, {
          digest,
          name: ref.name === undefined ? (known?.dataset ?? null) : parseName(ref.name, 'dataset name'),
          version: ref.version === undefined ? (known?.version ?? null) : parseVersion(ref.version),
          datasetVersionId: known?.id ?? null,
        });
      } else {
        const d = await this.#datasetVersion(ref.name, ref.version);
        datasets.set(d.digest, {
          digest: d.digest,
          name: d.dataset,
          version: d.version,
          datasetVersionId: d.id,
        });
      }
    }
    let parentVersionId: string | null = null;
    if (lineage.parent !== undefined) {
      const parent = await this.#modelVersion(lineage.parent.model ?? model, lineage.parent.version);
      parentVersionId = parent.id;
    }
    return {
      datasets: [...datasets.values()],
      codeCommit: lineage.codeCommit === undefined ? null : parseCommit(lineage.codeCommit),
      codeRepository:
        lineage.codeRepository === undefined
          ? null
          : parseText(lineage.codeRepository, 'code repository', 512),
      parameters: lineage.parameters === undefined ? {} : parseParameters(lineage.parameters),
      parentVersionId,
    };
  }

  /** Registers the files of `dir` as `model@version`: hash, scan, encrypt and store, record with lineage. */
  async registerModelVersion(
    principal: Principal,
    input: {
      readonly model: string;
      readonly version: string;
      readonly dir: string;
      readonly metadata?: ModelMetadata;
      readonly lineage?: LineageInput;
    },
  ): Promise<ModelVersionRecord> {
    const model = parseName(input.model, 'model name');
    const version = parseVersion(input.version);
    const meta = input.metadata ?? {};
    const description =
      meta.description === undefined ? null : parseText(meta.description, 'description', 4096);
    const framework = meta.framework === undefined ? null : parseText(meta.framework, 'framework', 128);
    const license = meta.license === undefined ? null : parseText(meta.license, 'license', 128);
    const owner = meta.owner === undefined ? null : parseText(meta.owner, 'owner', 256);
    return this.#run(
      principal,
      'model.register',
      versionResource(model, version, { stage: 'none', signed: false }),
      async () => {
        if ((await this.#repo.getModelVersion(model, version)) !== undefined) {
          throw new ConflictError(`model version ${model}@${version} already exists`);
        }
        const lineage = await this.#resolveLineage(model, input.lineage ?? {});
        const ingested = await this.#ingest(input.dir, 'model', model, version);
        const largest = ingested.files.reduce<FileRecord | undefined>(
          (a, f) => (a === undefined || f.size > a.size ? f : a),
          undefined,
        );
        const id = randomUUID();
        await this.#recordIngested(ingested.files, () =>
          this.#repo.insertModelVersion(
            {
              id,
              model,
              modelOwner: owner,
              modelDescription: null,
              version,
              digest: ingested.digest,
              size: ingested.size,
              format: largest?.format ?? 'unknown',
              description,
              framework,
              license,
              codeCommit: lineage.codeCommit,
              codeRepository: lineage.codeRepository,
              parameters: JSON.stringify(lineage.parameters),
              parentVersionId: lineage.parentVersionId,
              datasets: lineage.datasets,
              createdBy: principal.id,
              createdAt: this.#now(),
              files: ingested.files,
              scans: ingested.scans,
              scan: ingested.scan,
            },
            randomUUID(),
          ),
        );
        const stored = await this.#repo.getModelVersionById(id);
        if (stored === undefined) throw new Error('the version vanished after it was recorded');
        return stored;
      },
      (v) => ({ digest: v.digest, files: v.fileCount, bytes: v.size, verdict: v.scan.verdict ?? 'none' }),
    );
  }

  async registerDataset(
    principal: Principal,
    input: {
      readonly dataset: string;
      readonly version: string;
      readonly dir: string;
      readonly metadata: DatasetMetadata;
    },
  ): Promise<DatasetVersionRecord> {
    const dataset = parseName(input.dataset, 'dataset name');
    const version = parseVersion(input.version);
    const sensitivity = parseSensitivity(input.metadata.sensitivity);
    const owner = parseText(input.metadata.owner, 'owner', 256);
    const description =
      input.metadata.description === undefined
        ? null
        : parseText(input.metadata.description, 'description', 4096);
    return this.#run(
      principal,
      'dataset.register',
      datasetResource(dataset, sensitivity, owner),
      async () => {
        if ((await this.#repo.getDatasetVersion(dataset, version)) !== undefined) {
          throw new ConflictError(`dataset version ${dataset}@${version} already exists`);
        }
        const ingested = await this.#ingest(input.dir, 'dataset', dataset, version);
        const id = randomUUID();
        await this.#recordIngested(ingested.files, () =>
          this.#repo.insertDatasetVersion(
            {
              id,
              dataset,
              version,
              digest: ingested.digest,
              size: ingested.size,
              sensitivity,
              owner,
              description,
              createdBy: principal.id,
              createdAt: this.#now(),
              files: ingested.files,
              scans: ingested.scans,
              scan: ingested.scan,
            },
            randomUUID(),
          ),
        );
        const stored = await this.#repo.getDatasetVersionById(id);
        if (stored === undefined) throw new Error('the dataset version vanished after it was recorded');
        return stored;
      },
      (d) => ({ digest: d.digest, files: d.fileCount, bytes: d.size, sensitivity: d.sensitivity }),
    );
  }

  // ---------------------------------------------------------------- uploads (HTTP)

  /**
   * The staging area of one uploader's `kind name@version`: each principal stages apart, so that a file another
   * principal allowed to register the same name uploads can never become part of this one's version. The
   * directory is named by a hash of the principal id (ids may hold characters a path should not).
   */
  #stagingDirOf(principal: Principal, kind: SubjectKind, name: string, version: string): string {
    const uploader = createHash('sha256').update(principal.id).digest('hex').slice(0, 32);
    return path.join(this.#staging, kind, name, version, uploader);
  }

  /**
   * Streams one uploaded file into the caller's staging area of `kind name@version` (bounded by maxFileBytes
   * and maxFiles); the same caller's `finalize*` then registers the staged directory. Re-uploading a path
   * replaces it.
   */
  async stageFile(
    principal: Principal,
    target: {
      readonly kind: SubjectKind;
      readonly name: string;
      readonly version: string;
      readonly sensitivity?: Sensitivity;
    },
    filePath: string,
    body: AsyncIterable<Uint8Array>,
  ): Promise<{ path: string; size: number; sha256: string }> {
    const name = parseName(target.name, `${target.kind} name`);
    const version = parseVersion(target.version);
    const rel = parseArtifactPath(filePath);
    // The staging area's own temp-file suffix: such a name would be swept at finalize.
    if (rel.endsWith('.partial')) throw new InvalidInputError('uploaded file names may not end in .partial');
    const resource =
      target.kind === 'model'
        ? versionResource(name, version, { stage: 'none', signed: false })
        : datasetResource(name, target.sensitivity ?? 'restricted');
    return this.#run(
      principal,
      target.kind === 'model' ? 'model.register' : 'dataset.register',
      resource,
      async () => {
        const exists =
          target.kind === 'model'
            ? (await this.#repo.getModelVersion(name, version)) !== undefined
            : (await this.#repo.getDatasetVersion(name, version)) !== undefined;
        if (exists) throw new ConflictError(`${target.kind} version ${name}@${version} already exists`);
        const root = this.#stagingDirOf(principal, target.kind, name, version);
        const dest = path.join(root, ...rel.split('/'));
        await makeDirectoryDurably(path.dirname(dest)).catch((err: unknown) => {
          throw new InvalidInputError(`cannot stage ${JSON.stringify(rel)}: a parent path is a file`, {
            cause: err,
          });
        });
        const count = await countFiles(root, this.#limits.maxFiles + 1);
        const replacing = (await lstat(dest).catch(() => undefined)) !== undefined;
        if (!replacing && count >= this.#limits.maxFiles)
          throw new TooLargeError(`more than ${this.#limits.maxFiles} files`);
        const { tmp, handle } = await createPartial(dest);
        const hash = createHash('sha256');
        let size = 0;
        try {
          for await (const piece of body) {
            size += piece.byteLength;
            if (size > this.#limits.maxFileBytes) {
              throw new TooLargeError(
                `${JSON.stringify(rel)} is larger than ${this.#limits.maxFileBytes} bytes`,
              );
            }
            hash.update(piece);
            let done = 0;
            while (done < piece.byteLength)
              done += (await handle.write(piece, done, piece.byteLength - done)).bytesWritten;
          }
          await handle.sync();
        } catch (err) {
          await handle.close().catch(() => undefined);
          await rm(tmp, { force: true });
          throw err;
        }
        await handle.close();
        const existing = await lstat(dest).catch(() => undefined);
        if (existing !== undefined && !existing.isFile()) {
          await rm(tmp, { force: true });
          throw new InvalidInputError(`cannot stage ${JSON.stringify(rel)}: it is a directory`);
        }
        await renameDurably(tmp, dest);
        return { path: rel, size, sha256: hash.digest('hex') };
      },
      (r) => ({ path: r.path, bytes: r.size }),
    );
  }

  /** Forgets everything the caller staged for `kind name@version`. */
  async abortUpload(principal: Principal, kind: SubjectKind, name: string, version: string): Promise<void> {
    const n = parseName(name, `${kind} name`);
    const v = parseVersion(version);
    await this.#run(
      principal,
      kind === 'model' ? 'model.register' : 'dataset.register',
      kind === 'model'
        ? versionResource(n, v, { stage: 'none', signed: false })
        : datasetResource(n, 'restricted'),
      () => removeStaged(this.#stagingDirOf(principal, kind, n, v)),
    );
  }

  async finalizeModelVersion(
    principal: Principal,
    input: {
      readonly model: string;
      readonly version: string;
      readonly metadata?: ModelMetadata;
      readonly lineage?: LineageInput;
    },
  ): Promise<ModelVersionRecord> {
    const dir = this.#stagingDirOf(
      principal,
      'model',
      parseName(input.model, 'model name'),
      parseVersion(input.version),
    );
    await this.#requireStaged(dir);
    const v = await this.registerModelVersion(principal, { ...input, dir });
    await removeStaged(dir);
    return v;
  }

  async finalizeDataset(
    principal: Principal,
    input: { readonly dataset: string; readonly version: string; readonly metadata: DatasetMetadata },
  ): Promise<DatasetVersionRecord> {
    const dir = this.#stagingDirOf(
      principal,
      'dataset',
      parseName(input.dataset, 'dataset name'),
      parseVersion(input.version),
    );
    await this.#requireStaged(dir);
    const d = await this.registerDataset(principal, { ...input, dir });
    await removeStaged(dir);
    return d;
  }

  async #requireStaged(dir: string): Promise<void> {
    const staged = await lstat(dir).catch(() => undefined);
    if (staged === undefined) throw new NotFoundError('an upload with files');
    // Partial files of interrupted uploads must not become part of the version.
    await removePartials(dir);
  }

  // ---------------------------------------------------------------- signatures

  #manifestOf(subject: Subject, files: readonly FileRecord[]): Manifest {
    return {
      modelName: subject.name,
      resources: [...files]
        .sort((a, b) => compareCodePoints(a.path, b.path))
        .map((f) => ({ name: f.path, digest: f.sha256, algorithm: 'sha256' as const })),
      serialization: {
        method: 'files',
        hash_type: 'sha256',
        allow_symlinks: false,
        ignore_paths: OMS_DEFAULT_IGNORES,
      },
    };
  }

  /**
   * Checks a bundle: signed by one of the trusted signers, and its statement lists exactly the stored files
   * with their stored digests (so the bundle vouches for what the registry holds). Returns the signer id.
   */
  async #checkBundle(subject: Subject, bundle: string, files: readonly FileRecord[]): Promise<string> {
    let verified: Awaited<ReturnType<typeof verifyBundle>> | undefined;
    let trustedId: string | undefined;
    for (const signer of this.#trusted) {
      try {
        verified = await verifyBundle(bundle, signer.trust);
        trustedId = signer.id;
        break;
      } catch (err) {
        if (!(err instanceof ModelSigningError)) throw err;
      }
    }
    if (verified === undefined || trustedId === undefined) {
      throw new VerificationError('the signature does not verify under any trusted signer');
    }
    const { resources, serialization } = verified.statement.predicate;
    if (serialization.method !== 'files' || serialization.hash_type !== 'sha256') {
      throw new VerificationError('only OMS files/sha256 signatures can be matched against stored digests');
    }
    const stored = new Map(files.map((f) => [f.path, f.sha256]));
    const signed = new Map(resources.map((r) => [r.name, r.digest]));
    const differ = stored.size !== signed.size || [...stored].some(([p, d]) => signed.get(p) !== d);
    if (differ)
      throw new VerificationError(
        `the signature does not cover the stored files of ${subject.name}@${subject.version}`,
      );
    if (verified.statement.subject[0].digest.sha256 !== subject.digest) {
      throw new VerificationError('the signed root digest is not the version digest');
    }
    return trustedId;
  }

  async #sign(principal: Principal, subject: Subject): Promise<SignatureRecord> {
    const files = await this.#repo.files(subject.kind, subject.id);
    const signer = await this.#signer();
    const { bundle, statement } = await signManifest(this.#manifestOf(subject, files), signer);
    if (statement.subject[0].digest.sha256 !== subject.digest) {
      throw new IntegrityError('the recorded files do not add up to the version digest');
    }
    const text = JSON.stringify(bundle);
    const at = this.#now();
    let verifiedWith: string | null = null;
    try {
      verifiedWith = await this.#checkBundle(subject, text, files);
    } catch (err) {
      // A registry signer outside the trusted set still signs; the signature just cannot pass a gate.
      if (!(err instanceof VerificationError)) throw err;
    }
    const record: SignatureRecord = {
      id: randomUUID(),
      subjectKind: subject.kind,
      subjectId: subject.id,
      bundle: text,
      signerIdentity: signer.identity,
      signedBy: principal.id,
      signedAt: at,
      verifiedAt: verifiedWith === null ? null : at,
      verifiedWith,
    };
    await this.#repo.addSignature(record, { model: subject.name, version: subject.version });
    return record;
  }

  async #attach(principal: Principal, subject: Subject, bundle: string): Promise<SignatureRecord> {
    if (bundle.length > 16 * 2 ** 20) throw new TooLargeError('the bundle is larger than 16 MiB');
    const files = await this.#repo.files(subject.kind, subject.id);
    const verifiedWith = await this.#checkBundle(subject, bundle, files);
    const at = this.#now();
    const record: SignatureRecord = {
      id: randomUUID(),
      subjectKind: subject.kind,
      subjectId: subject.id,
      bundle,
      signerIdentity: `trusted:${verifiedWith}`,
      signedBy: principal.id,
      signedAt: at,
      verifiedAt: at,
      verifiedWith,
    };
    await this.#repo.addSignature(record, { model: subject.name, version: subject.version });
    return record;
  }

  /**
   * Verifies the newest signature that passes: trusted signer, statement equal to the stored digests. `deep`
   * also decrypts every stored file and re-hashes it (detects a tampered or lost blob).
   */
  async #verify(subject: Subject, deep: boolean): Promise<VerifyResult> {
    const files = await this.#repo.files(subject.kind, subject.id);
    const signatures = await this.#repo.signatures(subject.kind, subject.id);
    if (signatures.length === 0)
      throw new VerificationError(`${subject.name}@${subject.version} is not signed`);
    let lastError: unknown;
    let passed: { sig: SignatureRecord; trustedId: string } | undefined;
    for (const sig of signatures) {
      try {
        passed = { sig, trustedId: await this.#checkBundle(subject, sig.bundle, files) };
        break;
      } catch (err) {
        if (!(err instanceof VerificationError)) throw err;
        lastError = err;
      }
    }
    if (passed === undefined)
      throw lastError instanceof Error ? lastError : new VerificationError('no signature verifies');
    let filesChecked = 0;
    if (deep) {
      for (const f of files) {
        await this.#checkStoredFile(subject, f);
        filesChecked++;
      }
    }
    const at = this.#now();
    await this.#repo.markVerified(passed.sig.id, at, passed.trustedId);
    return {
      signatureId: passed.sig.id,
      signerIdentity: passed.sig.signerIdentity,
      verifiedWith: passed.trustedId,
      verifiedAt: at,
      filesChecked,
    };
  }

  #binding(subject: Subject, f: FileRecord): ArtifactBinding {
    return {
      kind: subject.kind,
      name: subject.name,
      version: subject.version,
      root: subject.digest,
      path: f.path,
    };
  }

  async #checkStoredFile(subject: Subject, f: FileRecord): Promise<void> {
    const hash = createHash('sha256');
    let size = 0;
    for await (const chunk of this.#vault.decrypt(f.blobId, this.#binding(subject, f))) {
      hash.update(chunk);
      size += chunk.length;
    }
    if (size !== f.size || hash.digest('hex') !== f.sha256) {
      throw new IntegrityError(`stored file ${JSON.stringify(f.path)} does not match its recorded digest`);
    }
  }

  static #modelSubject(v: ModelVersionRecord): Subject {
    return { kind: 'model', id: v.id, name: v.model, version: v.version, digest: v.digest };
  }

  static #datasetSubject(d: DatasetVersionRecord): Subject {
    return { kind: 'dataset', id: d.id, name: d.dataset, version: d.version, digest: d.digest };
  }

  /** Signs `model@version` with the registry's (KMS-held) key, over the stored digests. */
  async sign(principal: Principal, model: string, version: string): Promise<SignatureRecord> {
    return this.#run(
      principal,
      'model.sign',
      () => this.#versionResource(model, version),
      async () => this.#sign(principal, Registry.#modelSubject(await this.#modelVersion(model, version))),
      (s) => ({ signer: s.signerIdentity, trusted: s.verifiedWith !== null }),
    );
  }

  /** Records an externally produced OMS bundle, after verifying it against the trusted signers and digests. */
  async attachSignature(
    principal: Principal,
    model: string,
    version: string,
    bundle: string,
  ): Promise<SignatureRecord> {
    return this.#run(
      principal,
      'model.sign',
      () => this.#versionResource(model, version),
      async () =>
        this.#attach(principal, Registry.#modelSubject(await this.#modelVersion(model, version)), bundle),
      (s) => ({ signer: s.signerIdentity }),
    );
  }

  async verify(
    principal: Principal,
    model: string,
    version: string,
    options: { deep?: boolean } = {},
  ): Promise<VerifyResult> {
    return this.#run(
      principal,
      'model.verify',
      () => this.#versionResource(model, version),
      async () =>
        this.#verify(Registry.#modelSubject(await this.#modelVersion(model, version)), options.deep === true),
      (r) => ({ verifiedWith: r.verifiedWith, filesChecked: r.filesChecked }),
    );
  }

  async signDataset(principal: Principal, dataset: string, version: string): Promise<SignatureRecord> {
    return this.#run(
      principal,
      'dataset.sign',
      () => this.#datasetResourceOf(dataset, version),
      async () =>
        this.#sign(principal, Registry.#datasetSubject(await this.#datasetVersion(dataset, version))),
      (s) => ({ signer: s.signerIdentity, trusted: s.verifiedWith !== null }),
    );
  }

  async attachDatasetSignature(
    principal: Principal,
    dataset: string,
    version: string,
    bundle: string,
  ): Promise<SignatureRecord> {
    return this.#run(
      principal,
      'dataset.sign',
      () => this.#datasetResourceOf(dataset, version),
      async () =>
        this.#attach(
          principal,
          Registry.#datasetSubject(await this.#datasetVersion(dataset, version)),
          bundle,
        ),
      (s) => ({ signer: s.signerIdentity }),
    );
  }

  /** What a training job calls before it reads a dataset: signature by a trusted signer, and (deep) every byte. */
  async verifyDataset(
    principal: Principal,
    dataset: string,
    version: string,
    options: { deep?: boolean } = {},
  ): Promise<VerifyResult> {
    return this.#run(
      principal,
      'dataset.verify',
      () => this.#datasetResourceOf(dataset, version),
      async () =>
        this.#verify(
          Registry.#datasetSubject(await this.#datasetVersion(dataset, version)),
          options.deep === true,
        ),
      (r) => ({ verifiedWith: r.verifiedWith, filesChecked: r.filesChecked }),
    );
  }

  // ---------------------------------------------------------------- scanning

  async #rescan(subject: Subject, change: boolean): Promise<ScanSummary> {
    const files = await this.#repo.files(subject.kind, subject.id);
    const scans = await mapLimit(files, this.#concurrency, async (f) => {
      const source = await this.#vault.source(f.blobId, this.#binding(subject, f));
      const failed = (cause: unknown): IntegrityError =>
        new IntegrityError(`stored file ${JSON.stringify(f.path)} failed authentication`, { cause });
      let result: ScanResult;
      try {
        result = await this.#scanner.scanSource(source, path.posix.basename(f.path));
      } catch (err) {
        throw source.failure === undefined ? err : failed(source.failure);
      }
      if (source.failure !== undefined) throw failed(source.failure);
      return scanRecord(f.path, result, this.#now());
    });
    const summary: ScanSummary = {
      verdict: worst(scans.map((s) => s.verdict)),
      rulesVersion: this.#scanner.rulesVersion,
      scannedAt: this.#now(),
    };
    await this.#repo.replaceScans(
      subject.kind,
      subject.id,
      scans,
      summary,
      change && subject.kind === 'model'
        ? { model: subject.name, version: subject.version, at: summary.scannedAt ?? 0 }
        : undefined,
    );
    return summary;
  }

  /** Re-scans the stored (decrypted in memory, never on disk) files of a version with the current rules. */
  async scan(principal: Principal, model: string, version: string): Promise<ScanSummary> {
    return this.#run(
      principal,
      'model.scan',
      () => this.#versionResource(model, version),
      async () => this.#rescan(Registry.#modelSubject(await this.#modelVersion(model, version)), true),
      (s) => ({ verdict: s.verdict ?? 'none', rulesVersion: s.rulesVersion ?? '' }),
    );
  }

  async scanResults(principal: Principal, model: string, version: string): Promise<ScanRecord[]> {
    return this.#run(
      principal,
      'model.read',
      () => this.#versionResource(model, version),
      async () => this.#repo.scans('model', (await this.#modelVersion(model, version)).id),
    );
  }

  /**
   * Re-scans every model and dataset version whose stored results come from other scanner rules. One failing
   * version (say a tampered blob) does not stop the others; it is reported and its old result kept.
   */
  async rescanOutdated(principal: Principal): Promise<{
    rescanned: { kind: SubjectKind; name: string; version: string; verdict: Verdict | null }[];
    failed: { kind: SubjectKind; name: string; version: string; code: string }[];
  }> {
    return this.#run(
      principal,
      'model.scan',
      { type: 'Model', id: '*' },
      async () => {
        const rescanned: { kind: SubjectKind; name: string; version: string; verdict: Verdict | null }[] = [];
        const failed: { kind: SubjectKind; name: string; version: string; code: string }[] = [];
        for (const item of await this.#repo.outdatedScans(this.#scanner.rulesVersion)) {
          const subject =
            item.kind === 'model'
              ? await this.#repo
                  .getModelVersionById(item.id)
                  .then((v) => (v === undefined ? undefined : Registry.#modelSubject(v)))
              : await this.#repo
                  .getDatasetVersionById(item.id)
                  .then((d) => (d === undefined ? undefined : Registry.#datasetSubject(d)));
          if (subject === undefined) continue;
          try {
            const summary = await this.#rescan(subject, true);
            rescanned.push({
              kind: subject.kind,
              name: subject.name,
              version: subject.version,
              verdict: summary.verdict,
            });
          } catch (err) {
            failed.push({
              kind: subject.kind,
              name: subject.name,
              version: subject.version,
              code: err instanceof RegistryError ? err.code : 'internal',
            });
          }
        }
        return { rescanned, failed };
      },
      (r) => ({
        rescanned: r.rescanned.length,
        failed: r.failed.length,
        rulesVersion: this.#scanner.rulesVersion,
      }),
    );
  }

  /** Accepts the version's current scan verdict (suspicious, error, even malicious) for promotion. Audited. */
  async waive(
    principal: Principal,
    model: string,
    version: string,
    input: { readonly reason: string; readonly expiresAt?: number },
  ): Promise<WaiverRecord> {
    const reason = parseText(input.reason, 'waiver reason', 2048);
    if (
      input.expiresAt !== undefined &&
      (!Number.isSafeInteger(input.expiresAt) || input.expiresAt <= this.#now())
    ) {
      throw new InvalidInputError('a waiver expiry must be a future time (epoch milliseconds)');
    }
    return this.#run(
      principal,
      'model.waive',
      () => this.#versionResource(model, version),
      async () => {
        const v = await this.#modelVersion(model, version);
        if (v.scan.verdict === null || v.scan.verdict === 'clean') {
          throw new InvalidInputError('the scan is clean; there is nothing to waive');
        }
        const waiver: WaiverRecord = {
          id: randomUUID(),
          versionId: v.id,
          reason,
          coversVerdict: v.scan.verdict,
          rulesVersion: v.scan.rulesVersion ?? this.#scanner.rulesVersion,
          waivedBy: principal.id,
          waivedAt: this.#now(),
          expiresAt: input.expiresAt ?? null,
        };
        await this.#repo.addWaiver(waiver);
        return waiver;
      },
      (w) => ({ waiverId: w.id, verdict: w.coversVerdict, rulesVersion: w.rulesVersion }),
    );
  }

  // ---------------------------------------------------------------- promotion

  /**
   * Clean, or waived for this very scan. A waiver is bound to the rules version of the scan it was granted for:
   * the stored bytes never change, so a scan under the same rules finds the same, but a rescan under newer rules
   * may find what nobody has looked at yet, and must be waived again (or fixed).
   */
  async #scanAccepted(v: ModelVersionRecord): Promise<boolean> {
    if (v.scan.verdict === null) return false;
    if (v.scan.verdict === 'clean') return true;
    const now = this.#now();
    const verdict = v.scan.verdict;
    return (await this.#repo.waivers(v.id)).some(
      (w) =>
        (w.expiresAt === null || w.expiresAt > now) &&
        w.rulesVersion === v.scan.rulesVersion &&
        VERDICT_RANK[w.coversVerdict] >= VERDICT_RANK[verdict],
    );
  }

  /** The promotion gates, checked on current state (signature re-verified against the stored digests). */
  async #gates(v: ModelVersionRecord): Promise<void> {
    const model = await this.#model(v.model);
    if (model.quarantine !== null || v.quarantine !== null) {
      throw new GateError('quarantine', `${v.model}@${v.version} is quarantined`);
    }
    try {
      await this.#verify(Registry.#modelSubject(v), false);
    } catch (err) {
      if (err instanceof VerificationError) {
        throw new GateError(
          'signature',
          `${v.model}@${v.version} has no valid signature by a trusted signer`,
        );
      }
      throw err;
    }
    if (v.scan.rulesVersion !== this.#scanner.rulesVersion) {
      throw new GateError('scan', `${v.model}@${v.version} was scanned with other rules; rescan it first`);
    }
    if (!(await this.#scanAccepted(v))) {
      throw new GateError(
        'scan',
        `${v.model}@${v.version} scan verdict is ${v.scan.verdict ?? 'missing'} and not waived`,
      );
    }
  }

  /**
   * Points `stage` at `model@version` once the gates pass. For prod it only files an approval request (or
   * returns the pending one): a second principal has to `approve` it.
   */
  async promote(
    principal: Principal,
    model: string,
    version: string,
    stageInput: string,
  ): Promise<PromotionResult> {
    const stage = parseStage(stageInput);
    return this.#run(
      principal,
      'model.promote',
      () => this.#versionResource(model, version, stage),
      async (): Promise<PromotionResult> => {
        const v = await this.#modelVersion(model, version);
        await this.#gates(v);
        if (stage === 'prod') {
          const approvalId = await this.#repo.requestApproval({
            id: randomUUID(),
            versionId: v.id,
            stage,
            requestedBy: principal.id,
            requestedAt: this.#now(),
          });
          return { status: 'pending_approval', stage, approvalId };
        }
        await this.#repo.setStage(v.modelId, stage, v.id, principal.id, this.#now(), {
          model: v.model,
          version: v.version,
        });
        return { status: 'promoted', stage, version: v.version };
      },
      (r) => ({
        stage: r.stage,
        status: r.status,
        ...(r.status === 'pending_approval' ? { approvalId: r.approvalId } : {}),
      }),
    );
  }

  /**
   * Second-person approval of a pending promotion: re-checks the gates, then moves the stage. With `model` (the
   * HTTP route's `/v1/models/:name/...`), a request of another model does not exist.
   */
  async approve(principal: Principal, approvalId: string, model?: string): Promise<PromotionResult> {
    if (typeof approvalId !== 'string' || !/^[0-9a-f-]{36}$/.test(approvalId)) {
      throw new InvalidInputError('approval id must be a UUID');
    }
    const found = await this.#repo.getApproval(approvalId);
    const approval = model === undefined || found?.model === model ? found : undefined;
    return this.#run(
      principal,
      'model.approve',
      async () => {
        if (approval === undefined) throw new NotFoundError(`approval request ${approvalId}`);
        return this.#versionResource(approval.model, approval.version, approval.stage);
      },
      async (): Promise<PromotionResult> => {
        if (approval === undefined) throw new NotFoundError(`approval request ${approvalId}`);
        if (approval.status !== 'pending')
          throw new ConflictError('the approval request is no longer pending');
        if (approval.requestedBy === principal.id) throw new SelfApprovalError();
        const v = await this.#repo.getModelVersionById(approval.versionId);
        if (v === undefined) throw new NotFoundError('the model version of the approval request');
        await this.#gates(v);
        await this.#repo.setStage(
          v.modelId,
          approval.stage,
          v.id,
          principal.id,
          this.#now(),
          { model: v.model, version: v.version },
          approval.id,
        );
        return { status: 'promoted', stage: approval.stage, version: v.version };
      },
      (r) => ({ approvalId, stage: r.stage, requestedBy: approval?.requestedBy ?? '' }),
    );
  }

  async approvals(principal: Principal, model: string): Promise<ApprovalRecord[]> {
    const name = parseName(model, 'model name');
    return this.#run(principal, 'model.read', { type: 'Model', id: name }, () =>
      this.#repo.listApprovals(name),
    );
  }

  // ---------------------------------------------------------------- quarantine and serving

  /** Quarantines a whole model (no version given) or one version; effective for the next servable() call. */
  async quarantine(
    principal: Principal,
    model: string,
    version: string | undefined,
    reasonInput: string,
  ): Promise<void> {
    const reason = parseText(reasonInput, 'quarantine reason', 1024);
    await this.#setQuarantine(principal, 'model.quarantine', model, version, reason);
  }

  async release(principal: Principal, model: string, version: string | undefined): Promise<void> {
    await this.#setQuarantine(principal, 'model.release', model, version, null);
  }

  async #setQuarantine(
    principal: Principal,
    action: 'model.quarantine' | 'model.release',
    modelInput: string,
    versionInput: string | undefined,
    reason: string | null,
  ): Promise<void> {
    const name = parseName(modelInput, 'model name');
    const version = versionInput === undefined ? undefined : parseVersion(versionInput);
    await this.#run(
      principal,
      action,
      version === undefined ? { type: 'Model', id: name } : () => this.#versionResource(name, version),
      async () => {
        const m = await this.#model(name);
        const v = version === undefined ? undefined : await this.#modelVersion(name, version);
        const at = this.#now();
        await this.#repo.setQuarantine(
          { modelId: m.id, ...(v === undefined ? {} : { versionId: v.id }) },
          reason === null ? null : { reason, by: principal.id, at },
          { model: name, version: version ?? null, at },
        );
      },
      () => ({ scope: version === undefined ? 'model' : 'version' }),
    );
  }

  /**
   * Whether the gateway may serve `model@version` (optionally: from `stage`): deployed to a stage, signed and
   * verified by a currently trusted signer, scan clean or waived, neither model nor version quarantined. Reads
   * only the database (no crypto), so the gateway can call it per cache miss; it polls quarantineEpoch() to drop
   * its cache.
   */
  async servable(model: string, version: string, stage?: Stage): Promise<Servability> {
    const name = parseName(model, 'model name');
    const label = parseVersion(version);
    const v = await this.#repo.getModelVersion(name, label);
    if (v === undefined) return { servable: false, reasons: ['not_found'] };
    const reasons: string[] = [];
    const m = await this.#model(name);
    if (m.quarantine !== null || v.quarantine !== null) reasons.push('quarantined');
    const stages = await this.#repo.stagesOfVersion(v.id);
    if (stage === undefined ? stages.length === 0 : !stages.includes(stage)) reasons.push('not_deployed');
    const signatures = await this.#repo.signatures('model', v.id);
    const trustedIds = new Set(this.#trusted.map((t) => t.id));
    if (signatures.length === 0) reasons.push('unsigned');
    else if (!signatures.some((s) => s.verifiedWith !== null && trustedIds.has(s.verifiedWith)))
      reasons.push('unverified');
    if (!(await this.#scanAccepted(v))) reasons.push('scan_not_clean');
    return { servable: reasons.length === 0, reasons, digest: v.digest, stages };
  }

  /** Increases with every promotion, quarantine, release, rescan and signature. One indexed read. */
  quarantineEpoch(): Promise<number> {
    return this.#repo.epoch();
  }

  /** The change feed after `seq` (what changed, for a cache that wants to drop entries selectively). */
  changesSince(seq: number, limit = 1000): Promise<ChangeRecord[]> {
    if (!Number.isSafeInteger(seq) || seq < 0)
      throw new InvalidInputError('seq must be a non-negative integer');
    return this.#repo.changesSince(seq, Math.min(Math.max(1, limit), 10_000));
  }

  // ---------------------------------------------------------------- reads and lineage

  async listModels(principal: Principal): Promise<ModelRecord[]> {
    return this.#run(principal, 'model.read', { type: 'Model', id: '*' }, () => this.#repo.listModels());
  }

  async getModel(
    principal: Principal,
    model: string,
  ): Promise<{ model: ModelRecord; versions: ModelVersionRecord[]; stages: StageRecord[] }> {
    const name = parseName(model, 'model name');
    return this.#run(principal, 'model.read', { type: 'Model', id: name }, async () => {
      const m = await this.#model(name);
      return {
        model: m,
        versions: await this.#repo.listModelVersions(name),
        stages: await this.#repo.stages(m.id),
      };
    });
  }

  async getModelVersion(
    principal: Principal,
    model: string,
    version: string,
  ): Promise<{
    version: ModelVersionRecord;
    files: FileRecord[];
    signatures: SignatureRecord[];
    waivers: WaiverRecord[];
    stages: Stage[];
  }> {
    return this.#run(
      principal,
      'model.read',
      () => this.#versionResource(model, version),
      async () => {
        const v = await this.#modelVersion(model, version);
        return {
          version: v,
          files: await this.#repo.files('model', v.id),
          signatures: await this.#repo.signatures('model', v.id),
          waivers: await this.#repo.waivers(v.id),
          stages: await this.#repo.stagesOfVersion(v.id),
        };
      },
    );
  }

  async listDatasets(principal: Principal): Promise<string[]> {
    return this.#run(principal, 'dataset.read', datasetResource('*', 'restricted'), () =>
      this.#repo.listDatasets(),
    );
  }

  async getDatasetVersion(
    principal: Principal,
    dataset: string,
    version: string,
  ): Promise<{ version: DatasetVersionRecord; files: FileRecord[]; signatures: SignatureRecord[] }> {
    return this.#run(
      principal,
      'dataset.read',
      () => this.#datasetResourceOf(dataset, version),
      async () => {
        const d = await this.#datasetVersion(dataset, version);
        return {
          version: d,
          files: await this.#repo.files('dataset', d.id),
          signatures: await this.#repo.signatures('dataset', d.id),
        };
      },
    );
  }

  async listDatasetVersions(principal: Principal, dataset: string): Promise<DatasetVersionRecord[]> {
    const name = parseName(dataset, 'dataset name');
    return this.#run(principal, 'dataset.read', datasetResource(name, 'restricted'), () =>
      this.#repo.listDatasetVersions(name),
    );
  }

  /**
   * Every model version trained on a dataset (by digest, or by registered name and version): what a GDPR
   * erasure request has to retrain or retire. Unknown digests are authorised as `restricted` datasets.
   */
  async versionsTrainedOn(
    principal: Principal,
    ref: { readonly digest: string } | { readonly dataset: string; readonly version: string },
  ): Promise<ModelVersionRecord[]> {
    return this.#run(
      principal,
      'dataset.read',
      async () => {
        if ('digest' in ref) {
          const digest = parseDigest(ref.digest, 'dataset digest');
          const known = (await this.#repo.datasetVersionsByDigest(digest))[0];
          return known === undefined
            ? datasetResource(`sha256:${digest}`, 'restricted')
            : datasetResource(known.dataset, known.sensitivity, known.owner);
        }
        return this.#datasetResourceOf(ref.dataset, ref.version);
      },
      async () => {
        const digest =
          'digest' in ref
            ? parseDigest(ref.digest, 'dataset digest')
            : (await this.#datasetVersion(ref.dataset, ref.version)).digest;
        return this.#repo.versionsTrainedOn(digest);
      },
      (list) => ({ versions: list.length }),
    );
  }

  /** The version, its ancestors (parent chain) and direct children. */
  async ancestry(principal: Principal, model: string, version: string): Promise<Ancestry> {
    return this.#run(
      principal,
      'model.read',
      () => this.#versionResource(model, version),
      async () => {
        const v = await this.#modelVersion(model, version);
        const ancestors: ModelVersionRecord[] = [];
        const seen = new Set([v.id]);
        let parentId = await this.#repo.parentId(v.id);
        while (parentId !== null && !seen.has(parentId) && ancestors.length < MAX_ANCESTRY) {
          seen.add(parentId);
          const p = await this.#repo.getModelVersionById(parentId);
          if (p === undefined) break;
          ancestors.push(p);
          parentId = await this.#repo.parentId(p.id);
        }
        return { version: v, ancestors, children: await this.#repo.children(v.id) };
      },
    );
  }

  // ---------------------------------------------------------------- download

  /**
   * Decrypts every file of a version into `outDir` (which must be empty or absent), checking each file's size
   * and SHA-256 against the record before it is renamed into place. Quarantined models are not handed out. A
   * download that fails removes the directories and files it created (never `outDir` when it existed before).
   */
  async download(
    principal: Principal,
    kind: SubjectKind,
    name: string,
    version: string,
    outDir: string,
    options: { onProgress?: (bytes: number) => void } = {},
  ): Promise<{ files: number; bytes: number }> {
    return this.#run(
      principal,
      kind === 'model' ? 'model.read' : 'dataset.export',
      () =>
        kind === 'model' ? this.#versionResource(name, version) : this.#datasetResourceOf(name, version),
      async () => {
        const subject = await this.#subject(kind, name, version);
        const files = await this.#repo.files(kind, subject.id);
        // A failed download takes back what it created, so that a re-run does not find a directory that is
        // "not empty".
        const created = new CreatedEntries();
        await created.makeDirectory(outDir);
        try {
          return await this.#downloadInto(subject, files, outDir, created, options);
        } catch (err) {
          await created.remove();
          throw err;
        }
      },
      (r) => ({ files: r.files, bytes: r.bytes }),
    );
  }

  async #downloadInto(
    subject: Subject,
    files: readonly FileRecord[],
    outDir: string,
    created: CreatedEntries,
    options: { onProgress?: (bytes: number) => void },
  ): Promise<{ files: number; bytes: number }> {
    if ((await readdir(outDir)).length > 0)
      throw new InvalidInputError('the download directory is not empty');
    let bytes = 0;
    for (const f of files) {
      const dest = path.join(outDir, ...f.path.split('/'));
      await created.makeDirectory(path.dirname(dest));
      const { tmp, handle } = await createPartial(dest);
      const hash = createHash('sha256');
      let size = 0;
      try {
        for await (const chunk of this.#vault.decrypt(f.blobId, this.#binding(subject, f))) {
          hash.update(chunk);
          size += chunk.length;
          let done = 0;
          while (done < chunk.length)
            done += (await handle.write(chunk, done, chunk.length - done)).bytesWritten;
          options.onProgress?.(bytes + size);
        }
        if (size !== f.size || hash.digest('hex') !== f.sha256) {
          throw new IntegrityError(
            `stored file ${JSON.stringify(f.path)} does not match its recorded digest`,
          );
        }
        await handle.sync();
      } catch (err) {
        await handle.close().catch(() => undefined);
        await rm(tmp, { force: true });
        throw err;
      }
      await handle.close();
      created.add(dest);
      await renameDurably(tmp, dest);
      bytes += size;
    }
    return { files: files.length, bytes };
  }

  /**
   * One stored file as verified plaintext: each chunk is authenticated before it is yielded (bound to the
   * version and path), and the recorded size and digest are checked at the end (the stream fails otherwise).
   */
  async openFile(
    principal: Principal,
    kind: SubjectKind,
    name: string,
    version: string,
    filePath: string,
  ): Promise<{ file: FileRecord; content: AsyncIterable<Buffer> }> {
    const rel = parseArtifactPath(filePath);
    return this.#run(
      principal,
      kind === 'model' ? 'model.read' : 'dataset.export',
      () =>
        kind === 'model' ? this.#versionResource(name, version) : this.#datasetResourceOf(name, version),
      async () => {
        const subject = await this.#subject(kind, name, version);
        const file = (await this.#repo.files(kind, subject.id)).find((f) => f.path === rel);
        if (file === undefined) throw new NotFoundError(`file ${JSON.stringify(rel)}`);
        const vault = this.#vault;
        const binding = this.#binding(subject, file);
        const found: FileRecord = file;
        async function* content(): AsyncGenerator<Buffer> {
          const hash = createHash('sha256');
          let size = 0;
          for await (const chunk of vault.decrypt(found.blobId, binding)) {
            hash.update(chunk);
            size += chunk.length;
            yield chunk;
          }
          if (size !== found.size || hash.digest('hex') !== found.sha256) {
            throw new IntegrityError(`stored file ${JSON.stringify(rel)} does not match its recorded digest`);
          }
        }
        return { file, content: content() };
      },
      (r) => ({ path: r.file.path }),
    );
  }

  async #subject(kind: SubjectKind, name: string, version: string): Promise<Subject> {
    if (kind === 'model') {
      const v = await this.#modelVersion(name, version);
      const m = await this.#model(v.model);
      if (m.quarantine !== null || v.quarantine !== null) {
        throw new GateError('quarantine', `${v.model}@${v.version} is quarantined`);
      }
      return Registry.#modelSubject(v);
    }
    return Registry.#datasetSubject(await this.#datasetVersion(name, version));
  }

  /** The CycloneDX 1.6 ML-BOM of a version, validated against the 1.6 schema. */
  async bom(principal: Principal, model: string, version: string): Promise<Record<string, unknown>> {
    return buildModelBom(await this.bomInput(principal, model, version));
  }

  /** What the BOM builder needs, read under `model.read`. */
  async bomInput(
    principal: Principal,
    model: string,
    version: string,
  ): Promise<{
    model: ModelRecord;
    version: ModelVersionRecord;
    files: FileRecord[];
    datasets: (DatasetVersionRecord | LineageDataset)[];
    signatures: SignatureRecord[];
  }> {
    return this.#run(
      principal,
      'model.read',
      () => this.#versionResource(model, version),
      async () => {
        const v = await this.#modelVersion(model, version);
        const datasets: (DatasetVersionRecord | LineageDataset)[] = [];
        for (const d of v.lineage.datasets) {
          const known =
            d.datasetVersionId === null
              ? undefined
              : await this.#repo.getDatasetVersionById(d.datasetVersionId);
          datasets.push(known ?? d);
        }
        return {
          model: await this.#model(v.model),
          version: v,
          files: await this.#repo.files('model', v.id),
          datasets,
          signatures: await this.#repo.signatures('model', v.id),
        };
      },
    );
  }
}

async function countFiles(root: string, stopAt: number): Promise<number> {
  let n = 0;
  const walk = async (dir: string): Promise<void> => {
    for (const e of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
      if (n >= stopAt) return;
      if (e.isDirectory()) await walk(path.join(dir, e.name));
      else if (!e.name.endsWith('.partial')) n++;
    }
  };
  await walk(root);
  return n;
}

async function removePartials(root: string): Promise<void> {
  for (const e of await readdir(root, { withFileTypes: true })) {
    const p = path.join(root, e.name);
    if (e.isDirectory()) await removePartials(p);
    else if (e.name.endsWith('.partial')) await rm(p, { force: true });
  }
}

/** Removes one uploader's staging directory, and the version's directory once no other uploader has one there. */
async function removeStaged(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
  await rmdir(path.dirname(dir)).catch(() => undefined);
}

/**
 * A new private temporary file beside `dest` (`<dest>.<uuid>.partial`, the suffix finalize sweeps): created
 * exclusively and never through a symbolic link, for content to be checked before it is renamed into place.
 */
async function createPartial(dest: string): Promise<{ tmp: string; handle: FileHandle }> {
  const tmp = `${dest}.${randomUUID()}.partial`;
  const handle = await open(
    tmp,
    constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
    0o600,
  );
  return { tmp, handle };
}

import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat, open, readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { Transform } from 'node:stream';
import type {
  Ancestry,
  ApprovalRecord,
  ChangeRecord,
  DatasetVersionRecord,
  FileRecord,
  LineageInput,
  ModelMetadata,
  ModelRecord,
  ModelVersionRecord,
  PromotionResult,
  ScanRecord,
  ScanSummary,
  Sensitivity,
  Servability,
  SignatureRecord,
  Stage,
  StageRecord,
  VerifyResult,
  WaiverRecord,
} from '../registry/index.ts';
import { KmsClientError } from './errors.ts';
import type { WardenHttp } from './http.ts';
import { CreatedEntries, renameDurably } from '../durable/index.ts';

/** Byte progress of an upload or download: done so far, and the total when known. */
export type TransferProgress = (done: number, total: number) => void;

const seg = encodeURIComponent;
const filePath = (rel: string): string => rel.split('/').map(seg).join('/');

/** The response body ended early: the connection closed or was reset mid-stream (not a local write error). */
function cutOff(err: unknown): boolean {
  const code = typeof err === 'object' && err !== null ? (err as { code?: unknown }).code : undefined;
  return typeof code === 'string' && (code.startsWith('UND_ERR_') || code === 'ECONNRESET');
}

/** Regular files under `dir`, `/`-separated relative paths, sorted; symlinks and special files are refused. */
async function listFiles(dir: string): Promise<{ rel: string; abs: string; size: number }[]> {
  const out: { rel: string; abs: string; size: number }[] = [];
  const walk = async (abs: string, rel: string): Promise<void> => {
    for (const e of await readdir(abs, { withFileTypes: true })) {
      const childAbs = path.join(abs, e.name);
      const childRel = rel === '' ? e.name : `${rel}/${e.name}`;
      if (rel === '' && ['.git', '.github', '.gitattributes', '.gitignore'].includes(e.name)) continue;
      if (e.isDirectory()) await walk(childAbs, childRel);
      else if (e.isFile()) out.push({ rel: childRel, abs: childAbs, size: (await lstat(childAbs)).size });
      else throw new KmsClientError('invalid_input', 0, `${childRel} is not a regular file or directory`);
    }
  };
  await walk(dir, '');
  return out.sort((a, b) => Buffer.compare(Buffer.from(a.rel), Buffer.from(b.rel)));
}

/**
 * SDK for the model and dataset registry (`/v1/models`, `/v1/datasets`, `/v1/registry`). Uploads stream each
 * file with a raw PUT and then finalize; downloads check each file's SHA-256 against the server's record before
 * the file appears under its name.
 */
export class RegistryClient {
  readonly #http: WardenHttp;

  constructor(http: WardenHttp) {
    this.#http = http;
  }

  #version(model: string, version: string): string {
    return `/v1/models/${seg(model)}/versions/${seg(version)}`;
  }

  async #uploadFiles(
    base: string,
    dir: string,
    query: string,
    onProgress?: TransferProgress,
  ): Promise<number> {
    const files = await listFiles(dir);
    if (files.length === 0) throw new KmsClientError('invalid_input', 0, 'the directory has no files');
    const total = files.reduce((n, f) => n + f.size, 0);
    let done = 0;
    for (const f of files) {
      const counter = new Transform({
        transform(chunk: Buffer, _enc, cb) {
          done += chunk.length;
          onProgress?.(done, total);
          cb(null, chunk);
        },
      });
      await this.#http.upload(
        'PUT',
        `${base}/files/${filePath(f.rel)}${query}`,
        createReadStream(f.abs).pipe(counter),
        { length: f.size },
      );
    }
    return files.length;
  }

  // ---- models

  async listModels(): Promise<ModelRecord[]> {
    return (await this.#http.json<{ models: ModelRecord[] }>('GET', '/v1/models')).models;
  }

  getModel(
    model: string,
  ): Promise<{ model: ModelRecord; versions: ModelVersionRecord[]; stages: StageRecord[] }> {
    return this.#http.json('GET', `/v1/models/${seg(model)}`);
  }

  getVersion(
    model: string,
    version: string,
  ): Promise<{
    version: ModelVersionRecord;
    files: FileRecord[];
    signatures: SignatureRecord[];
    waivers: WaiverRecord[];
    stages: Stage[];
  }> {
    return this.#http.json('GET', this.#version(model, version));
  }

  /** Uploads every regular file of `dir` and registers them as `model@version`. */
  async registerModel(
    model: string,
    version: string,
    dir: string,
    options: { metadata?: ModelMetadata; lineage?: LineageInput; onProgress?: TransferProgress } = {},
  ): Promise<ModelVersionRecord> {
    const base = this.#version(model, version);
    try {
      await this.#uploadFiles(base, dir, '', options.onProgress);
    } catch (err) {
      await this.#http.request('DELETE', `${base}/upload`).catch(() => undefined);
      throw err;
    }
    return this.#http.json('POST', `/v1/models/${seg(model)}/versions`, {
      version,
      ...(options.metadata === undefined ? {} : { metadata: options.metadata }),
      ...(options.lineage === undefined ? {} : { lineage: options.lineage }),
    });
  }

  /** Signs with the registry's KMS key, or (with `bundle`) attaches an externally made OMS bundle. */
  sign(model: string, version: string, bundle?: string): Promise<SignatureRecord> {
    return this.#http.json(
      'POST',
      `${this.#version(model, version)}/sign`,
      bundle === undefined ? {} : { bundle },
    );
  }

  verify(model: string, version: string, options: { deep?: boolean } = {}): Promise<VerifyResult> {
    return this.#http.json('POST', `${this.#version(model, version)}/verify`, {
      deep: options.deep === true,
    });
  }

  scan(model: string, version: string): Promise<ScanSummary> {
    return this.#http.json('POST', `${this.#version(model, version)}/scan`);
  }

  async scanResults(model: string, version: string): Promise<ScanRecord[]> {
    return (await this.#http.json<{ results: ScanRecord[] }>('GET', `${this.#version(model, version)}/scan`))
      .results;
  }

  waive(model: string, version: string, reason: string, expiresAt?: number): Promise<WaiverRecord> {
    return this.#http.json('POST', `${this.#version(model, version)}/waive`, {
      reason,
      ...(expiresAt === undefined ? {} : { expiresAt }),
    });
  }

  promote(model: string, version: string, stage: Stage): Promise<PromotionResult> {
    return this.#http.json('POST', `${this.#version(model, version)}/promote`, { stage });
  }

  approve(model: string, approvalId: string): Promise<PromotionResult> {
    return this.#http.json('POST', `/v1/models/${seg(model)}/approvals/${seg(approvalId)}/approve`);
  }

  async approvals(model: string): Promise<ApprovalRecord[]> {
    return (
      await this.#http.json<{ approvals: ApprovalRecord[] }>('GET', `/v1/models/${seg(model)}/approvals`)
    ).approvals;
  }

  quarantine(model: string, reason: string, version?: string): Promise<{ ok: boolean; epoch: number }> {
    return this.#http.json('POST', `/v1/models/${seg(model)}/quarantine`, {
      reason,
      ...(version === undefined ? {} : { version }),
    });
  }

  release(model: string, version?: string): Promise<{ ok: boolean; epoch: number }> {
    return this.#http.json(
      'POST',
      `/v1/models/${seg(model)}/release`,
      version === undefined ? {} : { version },
    );
  }

  servable(model: string, version: string, stage?: Stage): Promise<Servability> {
    return this.#http.json(
      'GET',
      `${this.#version(model, version)}/servable${stage === undefined ? '' : `?stage=${seg(stage)}`}`,
    );
  }

  lineage(model: string, version: string): Promise<Ancestry> {
    return this.#http.json('GET', `${this.#version(model, version)}/lineage`);
  }

  bom(model: string, version: string): Promise<Record<string, unknown>> {
    return this.#http.json('GET', `${this.#version(model, version)}/bom`);
  }

  epoch(since?: number): Promise<{ epoch: number; changes?: ChangeRecord[] }> {
    return this.#http.json('GET', `/v1/registry/epoch${since === undefined ? '' : `?since=${since}`}`);
  }

  rescanOutdated(): Promise<{
    rescanned: { kind: string; name: string; version: string; verdict: string | null }[];
    failed: { kind: string; name: string; version: string; code: string }[];
  }> {
    return this.#http.json('POST', '/v1/registry/rescan');
  }

  /**
   * Downloads every file of a model version into `outDir` (created; must be empty), each written to a temp
   * file, checked against the recorded size and SHA-256, then renamed into place. A download that fails
   * removes the directories and files it created (never `outDir` when it existed before).
   */
  async downloadModel(
    model: string,
    version: string,
    outDir: string,
    onProgress?: TransferProgress,
  ): Promise<{ files: number; bytes: number }> {
    const { files } = await this.getVersion(model, version);
    return this.#download(this.#version(model, version), files, outDir, onProgress);
  }

  async #download(
    base: string,
    files: readonly FileRecord[],
    outDir: string,
    onProgress?: TransferProgress,
  ): Promise<{ files: number; bytes: number }> {
    const root = path.resolve(outDir);
    // A failed download (a quarantined version, a cut-off body) takes back what it created, so that a re-run
    // does not find a directory that is "not empty".
    const created = new CreatedEntries();
    await created.makeDirectory(root);
    try {
      return await this.#downloadInto(root, base, files, created, onProgress);
    } catch (err) {
      await created.remove();
      throw err;
    }
  }

  async #downloadInto(
    root: string,
    base: string,
    files: readonly FileRecord[],
    created: CreatedEntries,
    onProgress?: TransferProgress,
  ): Promise<{ files: number; bytes: number }> {
    if ((await readdir(root)).length > 0)
      throw new KmsClientError('invalid_input', 0, 'the output directory is not empty');
    const total = files.reduce((n, f) => n + f.size, 0);
    let done = 0;
    for (const f of files) {
      const dest = path.resolve(root, ...f.path.split('/'));
      // The server validates paths; a client still never writes outside the directory it was given.
      if (!dest.startsWith(root + path.sep))
        throw new KmsClientError('invalid_response', 0, 'a file path leaves the output directory');
      await created.makeDirectory(path.dirname(dest));
      const tmp = `${dest}.partial`;
      const handle = await open(tmp, 'wx', 0o600);
      const hash = createHash('sha256');
      let size = 0;
      try {
        for await (const chunk of await this.#http.stream('GET', `${base}/files/${filePath(f.path)}`)) {
          const buf = chunk as Buffer;
          hash.update(buf);
          size += buf.length;
          done += buf.length;
          await handle.write(buf);
          onProgress?.(done, total);
        }
        if (size !== f.size || hash.digest('hex') !== f.sha256) {
          throw new KmsClientError('integrity_failure', 0, `${f.path} does not match its recorded SHA-256`);
        }
      } catch (err) {
        await handle.close().catch(() => undefined);
        await rm(tmp, { force: true });
        if (!cutOff(err)) throw err;
        // The status line was 200, so a failure the server finds later (a stored chunk that does not
        // authenticate) can only cut the body off; undici then says no more than "other side closed".
        throw new KmsClientError(
          'connection_failed',
          0,
          `the download of ${f.path} from ${this.#http.address} was cut off after ${size} of ${f.size} bytes (a stored file that fails verification, or a network failure)`,
        );
      }
      await handle.close();
      created.add(dest);
      await renameDurably(tmp, dest);
    }
    return { files: files.length, bytes: done };
  }

  // ---- datasets

  async listDatasets(): Promise<string[]> {
    return (await this.#http.json<{ datasets: string[] }>('GET', '/v1/datasets')).datasets;
  }

  async datasetVersions(dataset: string): Promise<DatasetVersionRecord[]> {
    return (
      await this.#http.json<{ versions: DatasetVersionRecord[] }>('GET', `/v1/datasets/${seg(dataset)}`)
    ).versions;
  }

  getDatasetVersion(
    dataset: string,
    version: string,
  ): Promise<{ version: DatasetVersionRecord; files: FileRecord[]; signatures: SignatureRecord[] }> {
    return this.#http.json('GET', `/v1/datasets/${seg(dataset)}/versions/${seg(version)}`);
  }

  async registerDataset(
    dataset: string,
    version: string,
    dir: string,
    options: { sensitivity: Sensitivity; owner: string; description?: string; onProgress?: TransferProgress },
  ): Promise<DatasetVersionRecord> {
    await this.#uploadFiles(
      `/v1/datasets/${seg(dataset)}/versions/${seg(version)}`,
      dir,
      `?sensitivity=${seg(options.sensitivity)}`,
      options.onProgress,
    );
    return this.#http.json('POST', `/v1/datasets/${seg(dataset)}/versions`, {
      version,
      sensitivity: options.sensitivity,
      owner: options.owner,
      ...(options.description === undefined ? {} : { description: options.description }),
    });
  }

  signDataset(dataset: string, version: string, bundle?: string): Promise<SignatureRecord> {
    return this.#http.json(
      'POST',
      `/v1/datasets/${seg(dataset)}/versions/${seg(version)}/sign`,
      bundle === undefined ? {} : { bundle },
    );
  }

  verifyDataset(dataset: string, version: string, options: { deep?: boolean } = {}): Promise<VerifyResult> {
    return this.#http.json('POST', `/v1/datasets/${seg(dataset)}/versions/${seg(version)}/verify`, {
      deep: options.deep === true,
    });
  }

  /** Model versions trained on a dataset version, or on any dataset with this root digest. */
  async trainedOn(
    ref: { dataset: string; version: string } | { digest: string },
  ): Promise<ModelVersionRecord[]> {
    const url =
      'digest' in ref
        ? `/v1/lineage/datasets/${seg(ref.digest)}`
        : `/v1/datasets/${seg(ref.dataset)}/versions/${seg(ref.version)}/lineage`;
    return (await this.#http.json<{ versions: ModelVersionRecord[] }>('GET', url)).versions;
  }
}

import { createPublicKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import {
  AuditHasher,
  AuditLog,
  RotatingFileSink,
  SyslogTlsSink,
  WebhookSink,
  ed25519NoteKeyId,
  formatVerifierKey,
} from '../audit/index.ts';
import type { AuditEvent, AuditRecorder, AuditSink, NoteSigner } from '../audit/index.ts';
import { AuditUnavailableError, KmsSealedError } from '../kms/index.ts';
import type { KmsService } from '../kms/index.ts';
import type { StoreConfig } from '../store/index.ts';
import { makeDirectoryDurably } from '../durable/index.ts';

/** The KMS key that signs the audit log's checkpoints, and the one the per-log hasher key is derived from. */
export const CHECKPOINT_KEY = 'warden.audit-checkpoint';
export const HASHER_KEY = 'warden.audit-hasher';
const DAY_MS = 24 * 60 * 60 * 1000;

/** SIEM sinks from the configuration file (docs/audit-sinks.md); PEM material is read from files. */
export type AuditSinkConfig =
  | { readonly type: 'file'; readonly path: string; readonly maxBytes?: number; readonly keep?: number }
  | {
      readonly type: 'syslog';
      readonly host: string;
      readonly port: number;
      readonly caFile: string;
      readonly certFile?: string;
      readonly keyFile?: string;
    }
  | {
      readonly type: 'webhook';
      readonly url: string;
      readonly caFile?: string;
      /** File holding the `Authorization` header value (a secret: never in the config file itself). */
      readonly authorizationFile?: string;
      readonly spoolDir: string;
      readonly maxSpoolBytes?: number;
    };

/**
 * Signs checkpoints with an Ed25519 key held in the KMS (`warden.audit-checkpoint`). The key's public half is
 * known only once the KMS can be used (a Shamir root starts sealed), so until `load` succeeds the signer has no
 * key id and checkpoints fail and are retried; appends are unaffected.
 */
export class KmsNoteSigner implements NoteSigner {
  readonly keyName: string;
  #kms: KmsService | undefined;
  #loaded: { keyId: number; publicKey: Uint8Array; version: number } | undefined;
  #loading: Promise<void> | undefined;

  constructor(keyName: string) {
    this.keyName = keyName;
  }

  get keyId(): number {
    if (this.#loaded === undefined) {
      void this.load().catch(() => undefined);
      throw new AuditUnavailableError();
    }
    return this.#loaded.keyId;
  }

  /** The C2SP verifier key auditors use (`<name>+<id>+<base64>`); undefined until loaded. */
  get verifierKey(): string | undefined {
    return this.#loaded === undefined ? undefined : formatVerifierKey(this.keyName, this.#loaded.publicKey);
  }

  attach(kms: KmsService): void {
    this.#kms = kms;
  }

  /** Creates the key on first use and learns its public key; a no-op once done. */
  load(): Promise<void> {
    if (this.#loaded !== undefined) return Promise.resolve();
    this.#loading ??= this.#load().finally(() => {
      this.#loading = undefined;
    });
    return this.#loading;
  }

  async #load(): Promise<void> {
    const kms = this.#kms;
    if (kms === undefined) throw new AuditUnavailableError();
    const info = await kms.ensureSystemKey({ name: CHECKPOINT_KEY, type: 'ed25519', rotationPeriodDays: 0 });
    const latest = info.versions.find((v) => v.version === info.key.latestVersion);
    const spki = latest?.publicKey ?? null;
    if (latest === undefined || spki === null) throw new AuditUnavailableError();
    const jwk = createPublicKey({ key: spki, format: 'der', type: 'spki' }).export({
      format: 'jwk',
    });
    const publicKey = new Uint8Array(Buffer.from(String(jwk.x), 'base64url'));
    this.#loaded = {
      keyId: ed25519NoteKeyId(this.keyName, publicKey),
      publicKey,
      version: latest.version,
    };
  }

  async sign(message: Uint8Array): Promise<Uint8Array> {
    const kms = this.#kms;
    const loaded = this.#loaded;
    if (kms === undefined || loaded === undefined) throw new AuditUnavailableError();
    const { signature, keyVersion } = await kms.signAsSystem(CHECKPOINT_KEY, message);
    if (keyVersion !== loaded.version) {
      // Rotated by an operator: sign nothing under a key id that no longer matches, and learn the new key.
      this.#loaded = undefined;
      throw new AuditUnavailableError();
    }
    return new Uint8Array(signature);
  }
}

/**
 * Every component's `AuditRecorder`: the tamper-evident log first (an event is acknowledged only once it is
 * durable there: fail closed), then the SIEM sinks, which never hold an operation up or fail it. A sink that is
 * down loses nothing: the webhook spools to disk, and the log itself is the source of truth for a backfill.
 */
class AuditFanOut implements AuditRecorder {
  readonly #log: AuditLog;
  readonly #sinks: readonly AuditSink[];
  readonly #onSinkError: (err: unknown) => void;

  constructor(log: AuditLog, sinks: readonly AuditSink[], onSinkError: (err: unknown) => void) {
    this.#log = log;
    this.#sinks = sinks;
    this.#onSinkError = onSinkError;
  }

  async record(event: AuditEvent): Promise<void> {
    const { index, time } = await this.#log.append(event);
    // The sinks copy the log entry: its index and time name it, so a SIEM can find a gap and backfill it.
    const entry = { ...event, index, time };
    for (const sink of this.#sinks) sink.record(entry).catch(this.#onSinkError);
  }

  async close(): Promise<void> {
    await Promise.allSettled(this.#sinks.map((s) => s.close()));
  }
}

export interface AuditTrail {
  readonly log: AuditLog;
  /** What every component records through. */
  readonly recorder: AuditRecorder;
  readonly signer: KmsNoteSigner;
  /** Connects the KMS once it is open: checkpoint signing, the hasher key. */
  attach(kms: KmsService): void;
  /** Keyed hashes of sensitive values (`hmac-sha256:`), with a per-log key derived in the KMS. */
  hasher(): Promise<AuditHasher>;
  close(): Promise<void>;
}

export interface AuditTrailOptions {
  readonly store: StoreConfig;
  readonly origin: string;
  readonly retentionDays: number;
  readonly sinks: readonly AuditSinkConfig[];
  readonly log: (line: string) => void;
}

export async function openAuditTrail(options: AuditTrailOptions): Promise<AuditTrail> {
  const signer = new KmsNoteSigner(options.origin);
  const log = await AuditLog.open({
    store: options.store,
    origin: options.origin,
    signer,
    onBackgroundError: (err) => {
      if (!(err instanceof AuditUnavailableError)) {
        options.log(`audit checkpoint failed: ${err instanceof Error ? err.message : String(err)}`);
      }
    },
  });
  const sinks: AuditSink[] = [];
  try {
    for (const config of options.sinks) sinks.push(await openSink(config, options.log));
  } catch (err) {
    await Promise.allSettled(sinks.map((s) => s.close()));
    // Its closing checkpoint cannot be signed yet (no KMS): the sink's error is the one to report.
    await log.close().catch(() => undefined);
    throw err;
  }
  const recorder = new AuditFanOut(log, sinks, (err) => {
    options.log(`audit sink: ${err instanceof Error ? err.message : String(err)}`);
  });
  let kms: KmsService | undefined;
  let hasher: Promise<AuditHasher> | undefined;
  const prune = async () => {
    const removed = await log.prune(Date.now() - options.retentionDays * DAY_MS);
    if (removed > 0) options.log(`audit retention: pruned ${removed} event bodies (hashes kept)`);
  };
  const retention = setInterval(() => {
    prune().catch((err: unknown) => {
      options.log(`audit retention failed: ${err instanceof Error ? err.message : String(err)}`);
    });
  }, DAY_MS / 24);
  retention.unref();
  return {
    log,
    recorder,
    signer,
    attach(service) {
      kms = service;
      signer.attach(service);
    },
    hasher() {
      const service = kms;
      if (service === undefined) return Promise.reject(new AuditUnavailableError());
      hasher ??= (async () => {
        await service.ensureSystemKey({ name: HASHER_KEY, type: 'hmac-sha256', rotationPeriodDays: 0 });
        return new AuditHasher(
          await service.deriveAsSystem(HASHER_KEY, `warden audit hasher v1 ${options.origin}`),
        );
      })().catch((err: unknown) => {
        hasher = undefined;
        throw err;
      });
      return hasher;
    },
    async close() {
      clearInterval(retention);
      await recorder.close();
      try {
        await log.close();
      } catch (err) {
        // Sealed KMS: the entries are durable; the next start signs the checkpoint that covers them.
        if (!(err instanceof AuditUnavailableError || err instanceof KmsSealedError)) throw err;
        options.log('audit log closed without a final checkpoint (the KMS could not sign it)');
      }
    },
  };
}

async function openSink(config: AuditSinkConfig, log: (line: string) => void): Promise<AuditSink> {
  const onError = (err: Error) => {
    log(`audit sink ${config.type}: ${err.message}`);
  };
  const pem = (file: string | undefined) => (file === undefined ? undefined : readFileSync(file));
  switch (config.type) {
    case 'file':
      await makeDirectoryDurably(path.dirname(path.resolve(config.path)));
      return RotatingFileSink.open({
        path: config.path,
        ...(config.maxBytes === undefined ? {} : { maxBytes: config.maxBytes }),
        ...(config.keep === undefined ? {} : { keep: config.keep }),
      });
    case 'syslog': {
      const cert = pem(config.certFile);
      const key = pem(config.keyFile);
      return new SyslogTlsSink({
        host: config.host,
        port: config.port,
        ca: readFileSync(config.caFile),
        ...(cert === undefined ? {} : { cert }),
        ...(key === undefined ? {} : { key }),
        onError,
      });
    }
    case 'webhook': {
      const ca = pem(config.caFile);
      const authorization =
        config.authorizationFile === undefined
          ? undefined
          : readFileSync(config.authorizationFile, 'utf8').trim();
      return WebhookSink.open({
        url: config.url,
        spoolDir: path.resolve(config.spoolDir),
        ...(ca === undefined ? {} : { ca }),
        ...(authorization === undefined ? {} : { headers: { authorization } }),
        ...(config.maxSpoolBytes === undefined ? {} : { maxSpoolBytes: config.maxSpoolBytes }),
        onError,
      });
    }
  }
}

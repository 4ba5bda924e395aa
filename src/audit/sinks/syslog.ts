/**
 * Syslog sink: RFC 5424 messages over TLS (RFC 5425) with octet-counting framing (`<len> <msg>`).
 *
 * Each event becomes one message: PRI from the configured facility and a severity derived from the outcome
 * (success → informational 6, denied → notice 5, failure → warning 4), the event time as TIMESTAMP, configurable
 * HOSTNAME / APP-NAME / PROCID, the action as MSGID, the event fields as structured data (`[warden@PEN …]`, details
 * in `[wardenDetails@PEN …]`, values escaped per RFC 5424 §6.3.3) and the whole record as JSON in MSG (UTF-8 with
 * BOM, as §6.4 requires).
 *
 * Transport: TLS 1.2+ verified against the configured CA only (pinning: the system roots are not used), optional
 * client certificate, reconnect with exponential backoff and jitter. Events wait in a bounded in-memory queue
 * while disconnected; `record` resolves once the frame has been handed to the TLS socket. RFC 5425 has no
 * application acknowledgement, so frames written just before a connection dies can be lost; a frame whose write
 * fails is re-sent on the next connection. This sink is best effort across process crashes; the tamper-evident
 * log is the source of truth and the webhook sink (disk spool) is the one with a no-loss guarantee.
 */
import { isIP } from 'node:net';
import { hostname as osHostname } from 'node:os';
import { connect, type TLSSocket } from 'node:tls';
import type { AuditEvent } from '../recorder.ts';
import {
  SinkClosedError,
  Sleeper,
  backoffDelay,
  toSinkRecord,
  type AuditSink,
  type BackoffOptions,
  type SinkRecord,
} from './common.ts';

export interface SyslogFormatOptions {
  /** 0–23; default 13 ("log audit"). */
  readonly facility?: number;
  /** Default `os.hostname()`. */
  readonly hostname?: string;
  /** Default `warden`. */
  readonly appName?: string;
  /** Default the process id. */
  readonly procId?: string;
  /**
   * IANA Private Enterprise Number in the SD-IDs. Default 32473, the number RFC 5612 reserves for
   * documentation: set your organisation's own in production.
   */
  readonly enterpriseId?: number;
}

export interface SyslogTlsSinkOptions extends SyslogFormatOptions {
  readonly host: string;
  readonly port: number;
  /** PEM CA certificate(s): the only trust anchors for the server certificate. */
  readonly ca: string | Buffer;
  /** Optional client certificate and key (PEM) for mutual TLS. */
  readonly cert?: string | Buffer;
  readonly key?: string | Buffer;
  /** TLS server name to verify; default `host` unless it is an IP address (then the IP is checked). */
  readonly servername?: string;
  /** Events held while disconnected; `record` rejects with `SyslogQueueFullError` beyond. Default 10 000. */
  readonly maxQueue?: number;
  readonly backoff?: BackoffOptions;
  readonly connectTimeoutMs?: number;
  /** How long `close` waits for queued events to be written. Default 5 000 ms. */
  readonly closeTimeoutMs?: number;
  /** Connection and write errors (the sink keeps retrying). */
  readonly onError?: (err: Error) => void;
}

export class SyslogQueueFullError extends Error {
  readonly code = 'syslog_queue_full';
  constructor() {
    super('syslog sink queue is full');
  }
}

const SEVERITY = { success: 6, denied: 5, failure: 4 } as const;

/** Keeps PRINTUSASCII (33–126) only, truncated; `-` (NILVALUE) when nothing is left. */
function headerField(value: string | undefined, max: number): string {
  const s = (value ?? '').replace(/[^\x21-\x7e]/g, '_').slice(0, max);
  return s.length > 0 ? s : '-';
}

/** SD-NAME: 1–32 PRINTUSASCII except `=`, space, `]`, `"`. */
function sdName(name: string): string {
  const s = name.replace(/[^\x21-\x7e]|[=\]"]/g, '_').slice(0, 32);
  return s.length > 0 ? s : '_';
}

/** PARAM-VALUE escaping (RFC 5424 §6.3.3): `"`, `\` and `]` are backslash-escaped; UTF-8 made well-formed. */
export function escapeParamValue(value: string): string {
  return value.toWellFormed().replace(/["\\\]]/g, (c) => `\\${c}`);
}

function param(name: string, value: string | number | boolean | undefined): string {
  return value === undefined ? '' : ` ${sdName(name)}="${escapeParamValue(String(value))}"`;
}

/** One RFC 5424 message (without framing) for a record. */
export function formatSyslogMessage(r: SinkRecord, o: SyslogFormatOptions = {}): string {
  const facility = o.facility ?? 13;
  if (!Number.isInteger(facility) || facility < 0 || facility > 23)
    throw new RangeError('facility must be 0–23');
  const pen = o.enterpriseId ?? 32473;
  const pri = facility * 8 + SEVERITY[r.outcome];
  const header = [
    `<${pri}>1`,
    headerField(r.time, 64),
    headerField(o.hostname ?? osHostname(), 255),
    headerField(o.appName ?? 'warden', 48),
    headerField(o.procId ?? String(process.pid), 128),
    headerField(r.action, 32),
  ].join(' ');
  let sd =
    `[warden@${pen}` +
    param('id', r.id) +
    param('index', r.index) +
    param('action', r.action) +
    param('principal', r.principal.id) +
    param('authMethod', r.principal.authMethod) +
    param('resource', r.resource) +
    param('outcome', r.outcome) +
    param('reason', r.reason) +
    param('keyVersion', r.keyVersion) +
    param('requestId', r.requestId) +
    param('sourceIp', r.sourceIp) +
    param('userAgent', r.userAgent) +
    param('latencyMs', r.latencyMs) +
    ']';
  const details = Object.entries(r.details ?? {});
  if (details.length > 0) sd += `[wardenDetails@${pen}${details.map(([k, v]) => param(k, v)).join('')}]`;
  return `${header} ${sd} \uFEFF${JSON.stringify(r).toWellFormed()}`;
}

/** RFC 5425 octet-counting frame: `MSG-LEN SP SYSLOG-MSG`. */
export function frameSyslog(message: string): Buffer {
  const body = Buffer.from(message, 'utf8');
  return Buffer.concat([Buffer.from(`${body.byteLength} `), body]);
}

interface Queued {
  readonly frame: Buffer;
  readonly resolve: () => void;
  readonly reject: (err: unknown) => void;
}

export class SyslogTlsSink implements AuditSink {
  readonly #o: SyslogTlsSinkOptions;
  #queue: Queued[] = [];
  #socket: TLSSocket | undefined;
  #running: Promise<void> | undefined;
  #closing = false;
  #abandon = false;
  readonly #sleeper = new Sleeper();
  #attempt = 0;

  constructor(o: SyslogTlsSinkOptions) {
    formatSyslogMessage(
      {
        id: '-',
        time: '-',
        action: '-',
        principal: { id: '-', authMethod: '-' },
        resource: '-',
        outcome: 'success',
      },
      o,
    ); // validates the format options early
    this.#o = o;
  }

  record(event: AuditEvent): Promise<void> {
    if (this.#closing) return Promise.reject(new SinkClosedError());
    if (this.#queue.length >= (this.#o.maxQueue ?? 10_000)) return Promise.reject(new SyslogQueueFullError());
    const frame = frameSyslog(formatSyslogMessage(toSinkRecord(event), this.#o));
    const done = new Promise<void>((resolve, reject) => this.#queue.push({ frame, resolve, reject }));
    this.#running ??= this.#run();
    return done;
  }

  async flush(): Promise<void> {
    while (this.#running !== undefined) await this.#running;
  }

  async #run(): Promise<void> {
    try {
      while (this.#queue.length > 0 && !this.#abandon) {
        try {
          const socket = this.#socket ?? (await this.#connect());
          const batch = this.#queue.slice(0, 256);
          await new Promise<void>((resolve, reject) => {
            socket.write(Buffer.concat(batch.map((q) => q.frame)), (err) => {
              if (err) reject(err);
              else resolve();
            });
          });
          this.#queue.splice(0, batch.length);
          this.#attempt = 0;
          for (const q of batch) q.resolve();
        } catch (err) {
          this.#socket?.destroy();
          this.#socket = undefined;
          this.#o.onError?.(err instanceof Error ? err : new Error(String(err)));
          // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- changed by close() during the await
          if (this.#abandon) break;
          await this.#sleeper.sleep(backoffDelay(this.#attempt++, this.#o.backoff));
        }
      }
    } finally {
      this.#running = undefined;
    }
  }

  #connect(): Promise<TLSSocket> {
    const o = this.#o;
    return new Promise<TLSSocket>((resolve, reject) => {
      const servername = o.servername ?? (isIP(o.host) === 0 ? o.host : undefined);
      const s = connect({
        host: o.host,
        port: o.port,
        ca: o.ca,
        ...(o.cert !== undefined ? { cert: o.cert } : {}),
        ...(o.key !== undefined ? { key: o.key } : {}),
        ...(servername !== undefined ? { servername } : {}),
        minVersion: 'TLSv1.2',
        rejectUnauthorized: true,
      });
      const fail = (err: Error): void => {
        s.destroy();
        reject(err);
      };
      s.setTimeout(o.connectTimeoutMs ?? 10_000, () => {
        fail(new Error('syslog connect timeout'));
      });
      s.once('error', fail);
      s.once('secureConnect', () => {
        s.setTimeout(0);
        s.off('error', fail);
        s.on('error', (err: Error) => {
          o.onError?.(err);
          s.destroy();
        });
        s.on('close', () => {
          if (this.#socket === s) this.#socket = undefined;
        });
        s.resume(); // the server sends nothing; discard
        this.#socket = s;
        resolve(s);
      });
    });
  }

  async close(): Promise<void> {
    this.#closing = true;
    if (this.#running !== undefined) {
      const timeout = new Promise<void>((resolve) =>
        setTimeout(resolve, this.#o.closeTimeoutMs ?? 5000).unref(),
      );
      await Promise.race([this.flush(), timeout]);
    }
    this.#abandon = true;
    this.#sleeper.wake();
    await this.flush();
    for (const q of this.#queue.splice(0)) q.reject(new SinkClosedError());
    const s = this.#socket;
    this.#socket = undefined;
    if (s !== undefined) await new Promise<void>((resolve) => s.end(resolve));
  }
}

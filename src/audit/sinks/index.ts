/** SIEM sinks for audit events. See docs/audit-sinks.md. */
export { SinkClosedError, backoffDelay, toSinkRecord } from './common.ts';
export type { AuditSink, BackoffOptions, SinkRecord } from './common.ts';
export { RotatingFileSink } from './file.ts';
export type { RotatingFileSinkOptions } from './file.ts';
export {
  SyslogTlsSink,
  SyslogQueueFullError,
  escapeParamValue,
  formatSyslogMessage,
  frameSyslog,
} from './syslog.ts';
export type { SyslogFormatOptions, SyslogTlsSinkOptions } from './syslog.ts';
export { WebhookSink, WebhookDeliveryError, parseRetryAfter } from './webhook.ts';
export type { WebhookSinkOptions } from './webhook.ts';
export { DiskSpool, SpoolFullError } from './spool.ts';
export type { DiskSpoolOptions, SpoolBatch, SpoolPosition } from './spool.ts';

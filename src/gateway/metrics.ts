import { createServer } from 'node:http';
import type { Server } from 'node:http';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';

/**
 * The labels naming an endpoint in every per-endpoint metric. A name is unique per protocol family only (an
 * OpenAI endpoint and a KServe one may share it), so the protocol is part of it: one series per configured
 * endpoint, `unknown` for both when the request named none.
 */
export interface EndpointLabels {
  readonly endpoint: string;
  readonly protocol: string;
}

export const UNKNOWN_ENDPOINT: EndpointLabels = { endpoint: 'unknown', protocol: 'unknown' };

type E = 'endpoint' | 'protocol';

/**
 * Prometheus metrics of one gateway instance, in its own registry (several gateways in one process, as in the
 * tests, do not share counters). Labels are bounded: endpoint names and protocols come from configuration
 * (`unknown` otherwise), reasons are error codes, entities are the privacy engine's types.
 */
export class GatewayMetrics {
  readonly registry = new Registry();
  readonly requests: Counter<E | 'status'>;
  readonly latency: Histogram<E>;
  readonly upstreamLatency: Histogram<E>;
  readonly denials: Counter<E | 'reason'>;
  readonly limiterHits: Counter<E | 'limiter'>;
  readonly detections: Counter<E | 'detector' | 'action'>;
  readonly filterActions: Counter<E | 'entity' | 'action'>;
  readonly auditFailures: Counter;
  readonly auditBreaker: Gauge;
  #auditPending: () => number = () => 0;

  constructor() {
    const registers = [this.registry];
    this.requests = new Counter({
      name: 'warden_gateway_requests_total',
      help: 'Gateway requests by endpoint and HTTP status',
      labelNames: ['endpoint', 'protocol', 'status'],
      registers,
    });
    const buckets = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
    this.latency = new Histogram({
      name: 'warden_gateway_request_duration_seconds',
      help: 'Time from request to response end, by endpoint',
      labelNames: ['endpoint', 'protocol'],
      buckets,
      registers,
    });
    this.upstreamLatency = new Histogram({
      name: 'warden_gateway_upstream_duration_seconds',
      help: 'Time from upstream request to upstream response headers, by endpoint',
      labelNames: ['endpoint', 'protocol'],
      buckets,
      registers,
    });
    this.denials = new Counter({
      name: 'warden_gateway_denials_total',
      help: 'Requests refused by the gateway, by endpoint and reason code',
      labelNames: ['endpoint', 'protocol', 'reason'],
      registers,
    });
    this.limiterHits = new Counter({
      name: 'warden_gateway_limiter_hits_total',
      help: 'Requests refused by a rate limit or token budget',
      labelNames: ['endpoint', 'protocol', 'limiter'],
      registers,
    });
    this.detections = new Counter({
      name: 'warden_gateway_extraction_detections_total',
      help: 'Model-extraction detector verdicts with a non-zero score, by detector and resulting action',
      labelNames: ['endpoint', 'protocol', 'detector', 'action'],
      registers,
    });
    this.filterActions = new Counter({
      name: 'warden_gateway_output_filter_actions_total',
      help: 'PII findings in model output by entity type and action taken',
      labelNames: ['endpoint', 'protocol', 'entity', 'action'],
      registers,
    });
    this.auditFailures = new Counter({
      name: 'warden_gateway_audit_failures_total',
      help: 'Audit records the recorder rejected (each opens the audit breaker)',
      registers,
    });
    this.auditBreaker = new Gauge({
      name: 'warden_gateway_audit_breaker_open',
      help: '1 while requests are refused because an audit record failed, else 0',
      registers,
    });
    this.auditBreaker.set(0);
    const pending = (): number => this.#auditPending();
    new Gauge({
      name: 'warden_gateway_audit_pending',
      help: 'Audit records handed to the recorder and not yet committed',
      registers,
      collect() {
        this.set(pending());
      },
    });
  }

  /** Where the pending-records gauge reads its value at scrape time. */
  trackAuditPending(read: () => number): void {
    this.#auditPending = read;
  }
}

/**
 * The metrics listener: plain HTTP on its own address (loopback by default), serving only `GET /metrics`.
 * Kept off the public TLS listener so scraping needs no gateway credential and the metrics are never
 * reachable by API callers.
 */
export async function startMetricsServer(
  registry: Registry,
  listen: { host?: string; port: number },
): Promise<{ server: Server; url: string; close: () => Promise<void> }> {
  const server = createServer((req, res) => {
    if (req.method !== 'GET' || req.url !== '/metrics') {
      res.writeHead(404).end();
      return;
    }
    registry.metrics().then(
      (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text),
      () => res.writeHead(500).end(),
    );
  });
  const host = listen.host ?? '127.0.0.1';
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(listen.port, host, () => {
      resolve();
    });
  });
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : listen.port;
  return {
    server,
    url: `http://${host.includes(':') ? `[${host}]` : host}:${port}/metrics`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => {
          resolve();
        });
      }),
  };
}

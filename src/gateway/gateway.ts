import { Readable } from 'node:stream';
import Fastify from 'fastify';
import type { FastifyInstance, FastifyReply, FastifyRequest, FastifyServerOptions } from 'fastify';
import type { AuditOutcome, AuditRecorder } from '../audit/index.ts';
import type { Principal } from '../kms/index.ts';
import { networkOf } from '../policy/index.ts';
import { CompiledPolicy, PrivacyEngine } from '../privacy/index.ts';
import type { Policy } from '../privacy/index.ts';
import { AuditTrail, ContentHasher } from './audit-trail.ts';
import {
  checkEndpoints,
  DEFAULT_MAX_BODY_BYTES,
  DEFAULT_MAX_PROMPT_CHARS,
  DEFAULT_MAX_TOKENS,
} from './config.ts';
import type { EndpointConfig } from './config.ts';
import {
  auditUnavailable,
  bodyTooLarge,
  endpointNotFound,
  extractionBlocked,
  extractionThrottled,
  forbidden,
  GatewayError,
  invalidRequest,
  modelUnavailable,
  outputBlocked,
  stepUpRequired,
  unauthenticated,
  upstreamError,
  clientClosed,
  parseRetryAfter,
  upstreamMalformed,
  upstreamStreamCut,
  upstreamStreamError,
} from './errors.ts';
import type { ExtractionObserver, ExtractionResult } from './extraction-port.ts';
import { estimateTokens, Limits } from './limits.ts';
import type { LimiterStore, TokenReservation, WindowState } from './limits.ts';
import { GatewayMetrics, UNKNOWN_ENDPOINT } from './metrics.ts';
import type { EndpointLabels } from './metrics.ts';
import { OutputFilter } from './output-filter.ts';
import type { FilterCounts, StreamFilter } from './output-filter.ts';
import { ServableCache } from './servable.ts';
import type { ServableSource } from './servable.ts';
import { formatSseEvent, SseParser } from './sse.ts';
import { streamFailure, Upstream } from './upstream.ts';
import type { UpstreamResponse } from './upstream.ts';
import {
  checkParameters,
  checkPromptLength,
  numericFeatures,
  promptChars,
  promptText,
  REQUEST_SCHEMAS,
  validateBody,
} from './validation.ts';
import type { RouteKind } from './validation.ts';

export interface GatewayRequestContext {
  readonly requestId: string;
  readonly sourceIp: string;
  readonly userAgent?: string;
}

/** What a principal asks to invoke; the authorization callback decides on it. */
export interface InvocationTarget {
  readonly endpoint: string;
  readonly model: string;
  readonly version: string;
  readonly environment: string;
}

export type Authenticate = (
  request: FastifyRequest,
) => Principal | undefined | Promise<Principal | undefined>;
export type Authorize = (
  principal: Principal,
  target: InvocationTarget,
  context: GatewayRequestContext,
) => Promise<boolean> | boolean;

export interface GatewayOptions {
  readonly endpoints: readonly EndpointConfig[];
  /** Standalone: maps a request (its `Authorization` header) to a principal. Not used when mounted. */
  readonly authenticate?: Authenticate;
  /** Standalone: whether the principal may invoke the endpoint. Not used when mounted (Cedar decides). */
  readonly authorize?: Authorize;
  /** The registry's view of which versions may be served (polled every `servableRefreshMs`). */
  readonly servable: ServableSource;
  readonly servableRefreshMs?: number;
  /**
   * Every request is recorded here, write-behind: the response is released once `record()` was called, and a
   * rejected record makes the gateway refuse requests (503 `audit_unavailable`) until a later record succeeds.
   */
  readonly audit: AuditRecorder;
  /** HMAC key (>= 32 bytes) for the content hashes in audit records. */
  readonly auditKey: Uint8Array;
  /** Audit records handed over and not yet settled beyond which requests are refused. Default 10 000. */
  readonly maxPendingAudit?: number;
  readonly limiter?: LimiterStore;
  /** Key (>= 32 bytes, same on every node) hashing principal ids into limiter keys. Random if absent (memory). */
  readonly limiterKey?: Uint8Array;
  /** Default output policy (endpoints may override); default: redact every entity type. */
  readonly outputPolicy?: Policy;
  readonly privacyEngine?: PrivacyEngine;
  /** The extraction monitor of an endpoint, if any (created once per endpoint). */
  readonly extraction?: (endpoint: EndpointConfig) => ExtractionObserver | undefined;
  /** The organisation a principal belongs to, for the extraction monitor. Default: first group, else id. */
  readonly organisationOf?: (principal: Principal) => string;
  /** Largest upstream response read for filtering, bytes. Default 16 MiB. */
  readonly maxResponseBytes?: number;
  /** Retry-After sent when the extraction monitor throttles, seconds. Default 60. */
  readonly extractionThrottleSeconds?: number;
}

export interface StandaloneOptions extends GatewayOptions {
  readonly authenticate: Authenticate;
  readonly authorize: Authorize;
  /** PEM key and certificate: TLS 1.3 only. Without it, plain HTTP (tests, behind a TLS terminator). */
  readonly tls?: {
    readonly key: string | Buffer;
    readonly cert: string | Buffer;
    /** Ask clients for a certificate without verifying it in the handshake: `authenticate` verifies it. */
    readonly requestClientCertificate?: boolean;
  };
  /**
   * Behind one fronting proxy: the source address is the last `X-Forwarded-For` entry (the one the proxy
   * appended), never one the client wrote. Default false.
   */
  readonly trustProxy?: boolean;
  readonly logger?: boolean;
}

const OPENAI_KINDS: ReadonlySet<RouteKind> = new Set(['chat', 'completions', 'embeddings']);
const DEFAULT_MAX_RESPONSE_BYTES = 16 * 1024 * 1024;
const DEFAULT_POLICY: Policy = { defaultAction: 'redact' };

/** One route of the gateway: method POST, URL, the kind of request it takes. */
export const GATEWAY_ROUTES: readonly {
  readonly url: string;
  readonly kind: RouteKind;
  /** For the OpenAPI document. */
  readonly summary: string;
}[] = [
  {
    url: '/v1/chat/completions',
    kind: 'chat',
    summary: 'OpenAI-compatible chat completion (streamed with `stream: true`), answer filtered for PII',
  },
  {
    url: '/v1/completions',
    kind: 'completions',
    summary: 'OpenAI-compatible text completion, filtered for PII',
  },
  { url: '/v1/embeddings', kind: 'embeddings', summary: 'OpenAI-compatible embeddings' },
  {
    url: '/v2/models/:model/infer',
    kind: 'kserve-v2',
    summary: 'KServe v2 (Open Inference Protocol) inference',
  },
  // A regex-bounded parameter followed by `::` (find-my-way's escaped literal colon): `/v1/models/credit:predict`.
  {
    url: '/v1/models/:model(^[^:/]+)::predict',
    kind: 'predict',
    summary: 'KServe v1 / TensorFlow Serving style predict',
  },
];

interface Prepared {
  readonly endpoint: EndpointConfig;
  /** Its labels in metrics (built once). */
  readonly labels: EndpointLabels;
  readonly upstream: Upstream;
  readonly filter: OutputFilter | undefined;
  readonly monitor: ExtractionObserver | undefined;
}

/** What one request did, for the audit record and metrics. */
interface Trace {
  endpoint: EndpointConfig | undefined;
  /** The endpoint's metrics labels (`unknown` until it is resolved). */
  labels: EndpointLabels;
  principal: Principal | undefined;
  limiter: WindowState[];
  reservation: TokenReservation | undefined;
  tokensUsed: number | undefined;
  extraction: ExtractionResult | undefined;
  filter: FilterCounts | undefined;
  requestBytes: number;
  requestHash: string | undefined;
  responseBytes: number;
  responseHash: string | undefined;
  attempts: number;
  stream: boolean;
}

/**
 * What the standalone server's hooks learnt about a request, in one weak entry per request (a weak collection
 * operation is not free at gateway request rates). Mounted requests have none: the server passes the principal.
 */
interface RequestState {
  principal: Principal | undefined;
  raw: Buffer | undefined;
  audited: boolean;
}
const requestStates = new WeakMap<FastifyRequest, RequestState>();

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function summarise(counts: FilterCounts | undefined): string {
  if (counts === undefined || counts.size === 0) return '';
  return [...counts].map(([k, n]) => `${k}=${n}`).join(',');
}

function outputLabel(kind: RouteKind, body: unknown): string | undefined {
  if (!isObject(body)) return undefined;
  let first: unknown;
  if (kind === 'kserve-v2' && Array.isArray(body.outputs)) {
    const outputs = body.outputs as unknown[];
    const labelled = outputs.find((o) => isObject(o) && o.datatype === 'BYTES') ?? outputs[0];
    if (isObject(labelled) && Array.isArray(labelled.data)) first = labelled.data[0];
  } else if (kind === 'predict' && Array.isArray(body.predictions)) {
    first = body.predictions[0];
  }
  if (first === undefined) return undefined;
  return (typeof first === 'string' ? first : JSON.stringify(first)).slice(0, 128);
}

/**
 * The gateway core: endpoints, upstream pools, servable cache, limiters, output filters, metrics and the
 * per-request pipeline. `createGateway` wraps it in a standalone Fastify server; `registerGatewayRoutes` mounts
 * it inside `warden server`, whose hooks then authenticate and authorise.
 */
export class Gateway {
  readonly metrics = new GatewayMetrics();
  readonly servable: ServableCache;
  readonly limits: Limits;
  readonly #options: GatewayOptions;
  readonly #openai = new Map<string, Prepared>();
  readonly #models = new Map<string, Prepared>();
  readonly #upstreams = new Map<string, Upstream>();
  readonly #hasher: ContentHasher;
  readonly #trail: AuditTrail;
  readonly #maxResponseBytes: number;
  readonly #bodyLimit: number;

  constructor(options: GatewayOptions) {
    checkEndpoints(options.endpoints);
    if (options.auditKey.length < 32) throw new TypeError('auditKey must be at least 32 bytes');
    this.#options = options;
    this.#hasher = new ContentHasher(options.auditKey);
    const metrics = this.metrics;
    this.#trail = new AuditTrail(options.audit, {
      ...(options.maxPendingAudit === undefined ? {} : { maxPending: options.maxPendingAudit }),
      onFailure: () => {
        metrics.auditFailures.inc();
      },
      onBreaker: (open) => {
        metrics.auditBreaker.set(open ? 1 : 0);
      },
    });
    metrics.trackAuditPending(() => this.#trail.pending);
    this.#maxResponseBytes = options.maxResponseBytes ?? DEFAULT_MAX_RESPONSE_BYTES;
    this.servable = new ServableCache(options.servable, { refreshMs: options.servableRefreshMs ?? 1000 });
    this.limits = new Limits(options.limiter, options.limiterKey);
    const engine = options.privacyEngine ?? new PrivacyEngine();
    const defaultPolicy = new CompiledPolicy(options.outputPolicy ?? DEFAULT_POLICY);
    let bodyLimit = 0;
    for (const endpoint of options.endpoints) {
      const poolKey = Upstream.poolKey(endpoint.upstream);
      let upstream = this.#upstreams.get(poolKey);
      if (upstream === undefined) {
        upstream = new Upstream(endpoint.upstream);
        this.#upstreams.set(poolKey, upstream);
      }
      const policy =
        endpoint.outputPolicy === false
          ? undefined
          : endpoint.outputPolicy === undefined
            ? defaultPolicy
            : new CompiledPolicy({ ...options.outputPolicy, ...endpoint.outputPolicy });
      const prepared: Prepared = {
        endpoint,
        labels: { endpoint: endpoint.name, protocol: endpoint.protocol },
        upstream,
        filter: policy === undefined ? undefined : new OutputFilter(engine, policy),
        monitor: options.extraction?.(endpoint),
      };
      (endpoint.protocol === 'openai' ? this.#openai : this.#models).set(endpoint.name, prepared);
      bodyLimit = Math.max(bodyLimit, endpoint.limits?.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES);
    }
    this.#bodyLimit = bodyLimit;
  }

  /** Largest body any endpoint accepts: the HTTP layer's limit; each endpoint then applies its own. */
  get bodyLimit(): number {
    return this.#bodyLimit;
  }

  async start(): Promise<void> {
    await this.servable.start();
  }

  /** Stops the poller and the upstream pools, then waits for every audit record handed over to settle. */
  async close(): Promise<void> {
    this.servable.stop();
    await Promise.all([...this.#upstreams.values()].map((u) => u.close()));
    await this.#trail.settled();
  }

  /**
   * Resolves once every audit record handed over so far has been committed or has failed (records are
   * write-behind: a response may reach its client before its record is durable).
   */
  auditSettled(): Promise<void> {
    return this.#trail.settled();
  }

  /** False while the audit breaker is open or the recorder is too far behind: requests then get 503. */
  get auditAvailable(): boolean {
    return this.#trail.accepts();
  }

  #lookup(kind: RouteKind, name: unknown): Prepared | undefined {
    if (typeof name !== 'string') return undefined;
    const prepared = (OPENAI_KINDS.has(kind) ? this.#openai : this.#models).get(name);
    if (prepared === undefined) return undefined;
    const protocol = prepared.endpoint.protocol;
    if (kind === 'kserve-v2' && protocol !== 'kserve-v2') return undefined;
    if (kind === 'predict' && protocol !== 'predict') return undefined;
    return prepared;
  }

  #endpointName(kind: RouteKind, request: FastifyRequest): unknown {
    if (OPENAI_KINDS.has(kind)) return isObject(request.body) ? request.body.model : undefined;
    return (request.params as { model?: string }).model;
  }

  /** The Cedar resource of a request (mounted mode): the endpoint with its environment. */
  resourceOf(
    kind: RouteKind,
    request: FastifyRequest,
  ): { type: 'Endpoint'; id: string; attrs: { environment: string } } {
    const name = this.#endpointName(kind, request);
    const prepared = this.#lookup(kind, name);
    // An unknown endpoint gets an environment no policy grants, so Cedar denies it like any other.
    return {
      type: 'Endpoint',
      id: typeof name === 'string' ? name : '',
      attrs: { environment: prepared?.endpoint.environment ?? '' },
    };
  }

  /**
   * Runs the pipeline for one request and answers it: authenticate, authorise, servable, rate limits, input
   * checks, token reservation, extraction monitor, upstream, output filter, audit. `principal` is given when
   * mounted (the server already authenticated and authorised); otherwise the standalone hooks provide it.
   */
  async handle(
    kind: RouteKind,
    request: FastifyRequest,
    reply: FastifyReply,
    mounted?: { principal: Principal },
  ): Promise<void> {
    const started = performance.now();
    const trace: Trace = {
      endpoint: undefined,
      labels: UNKNOWN_ENDPOINT,
      principal: mounted?.principal ?? requestStates.get(request)?.principal,
      limiter: [],
      reservation: undefined,
      tokensUsed: undefined,
      extraction: undefined,
      filter: undefined,
      requestBytes: 0,
      requestHash: undefined,
      responseBytes: 0,
      responseHash: undefined,
      attempts: 0,
      stream: false,
    };
    let upstreamCalled = false;
    try {
      // Fail closed: nothing is served while the audit trail cannot record.
      if (!this.#trail.accepts()) throw auditUnavailable();
      const principal = trace.principal;
      if (principal === undefined) throw unauthenticated();
      const body = request.body;
      if (!isObject(body)) throw invalidRequest('the body must be a JSON object');
      const raw = requestStates.get(request)?.raw ?? Buffer.from(JSON.stringify(body));
      trace.requestBytes = raw.length;
      trace.requestHash = this.#hasher.hash(raw);
      const prepared = this.#lookup(kind, this.#endpointName(kind, request));
      if (prepared === undefined) throw endpointNotFound();
      const { endpoint } = prepared;
      trace.endpoint = endpoint;
      trace.labels = prepared.labels;
      const context = this.#context(request);
      if (mounted === undefined) {
        const authorize = this.#options.authorize;
        const target = {
          endpoint: endpoint.name,
          model: endpoint.model,
          version: endpoint.version,
          environment: endpoint.environment,
        };
        if (authorize === undefined) throw forbidden();
        const allowed = authorize(principal, target, context);
        // Anything but `true` denies; a synchronous answer is taken without a microtask turn.
        const decision: unknown = typeof allowed === 'boolean' ? allowed : await allowed;
        if (decision !== true) throw forbidden();
      }
      const servable =
        this.servable.cached(endpoint.model, endpoint.version) ??
        (await this.servable.check(endpoint.model, endpoint.version));
      if (!servable) throw modelUnavailable();
      const limitKey = this.limits.keyFor(principal.id, endpoint.model);
      trace.limiter.push(...(await this.limits.admit(limitKey, endpoint.limits?.requests ?? [])));

      const maxBody = endpoint.limits?.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
      if (raw.length > maxBody) throw bodyTooLarge(maxBody);
      validateBody(kind, body);
      checkParameters(kind, body, endpoint.allow ?? {});
      const prompt = promptText(kind, body);
      const inputChars = promptChars(kind, body, prompt);
      checkPromptLength(inputChars, endpoint.limits?.maxPromptChars ?? DEFAULT_MAX_PROMPT_CHARS);
      const stream = (kind === 'chat' || kind === 'completions') && body.stream === true;
      trace.stream = stream;

      let upstreamBody: Buffer = raw;
      if (OPENAI_KINDS.has(kind)) {
        const rewritten: Record<string, unknown> = {
          ...body,
          model: endpoint.upstreamModel ?? endpoint.name,
        };
        let completion = 0;
        if (kind !== 'embeddings') {
          const cap = endpoint.limits?.maxTokens ?? DEFAULT_MAX_TOKENS;
          // max_completion_tokens replaces max_tokens, but a request may carry both and an upstream may obey
          // either: each one present is capped, the reservation takes the larger. Without either, max_tokens.
          const fields =
            kind === 'chat' && body.max_completion_tokens !== undefined
              ? ['max_completion_tokens', ...(body.max_tokens === undefined ? [] : ['max_tokens'])]
              : ['max_tokens'];
          for (const field of fields) {
            const asked = body[field];
            const bounded = Math.min(typeof asked === 'number' ? asked : cap, cap);
            rewritten[field] = bounded;
            completion = Math.max(completion, bounded);
          }
          // best_of completions are generated (and billed) server-side for every one returned.
          const n = typeof body.n === 'number' ? body.n : 1;
          const bestOf = typeof body.best_of === 'number' ? body.best_of : 1;
          completion *= Math.max(n, bestOf);
          if (stream && (endpoint.limits?.tokens?.length ?? 0) > 0) {
            // Usage is the only way to settle a streamed reservation exactly.
            rewritten.stream_options = { include_usage: true };
          }
        }
        const tokenLimits = endpoint.limits?.tokens ?? [];
        if (tokenLimits.length > 0) {
          const messages = kind === 'chat' ? (body.messages as unknown[]).length : 1;
          const estimate = estimateTokens(inputChars, messages, completion);
          const { reservation, states } = await this.limits.reserve(limitKey, tokenLimits, estimate);
          trace.reservation = reservation;
          trace.limiter.push(...states);
        }
        upstreamBody = Buffer.from(JSON.stringify(rewritten));
      }

      if (prepared.monitor !== undefined && OPENAI_KINDS.has(kind)) {
        this.#observe(prepared, principal, context, { text: prompt }, trace);
      }

      const upstreamModel = encodeURIComponent(endpoint.upstreamModel ?? endpoint.name);
      const path =
        kind === 'chat'
          ? '/v1/chat/completions'
          : kind === 'completions'
            ? '/v1/completions'
            : kind === 'embeddings'
              ? '/v1/embeddings'
              : kind === 'kserve-v2'
                ? `/v2/models/${upstreamModel}/infer`
                : `/v1/models/${upstreamModel}:predict`;
      const idempotent =
        endpoint.idempotent ?? (kind === 'embeddings' || kind === 'kserve-v2' || kind === 'predict');
      // A client that goes away before its answer cancels the model call (and its retries): nothing would read
      // what the model still generated. The token reservation stays charged: the model may have generated.
      const cancel = new AbortController();
      reply.raw.once('close', () => {
        if (!reply.raw.writableFinished) cancel.abort(clientClosed());
      });
      const call = {
        path,
        body: upstreamBody,
        idempotent,
        headers: { 'x-request-id': request.id, ...(stream ? { accept: 'text/event-stream' } : {}) },
        signal: cancel.signal,
      };
      const upstreamStarted = performance.now();
      upstreamCalled = true;
      if (stream) {
        const res = await prepared.upstream.post(call);
        this.#upstreamAnswered(trace, res.attempts, upstreamStarted);
        if (res.statusCode !== 200) {
          await res.body.dump().catch(() => undefined);
          return await this.#upstreamRefused(trace, res.statusCode, res.headers['retry-after']);
        }
        this.#stream(kind, prepared, request, reply, res, trace, started);
        return;
      }
      const res = await prepared.upstream.exchange(call, this.#maxResponseBytes);
      this.#upstreamAnswered(trace, res.attempts, upstreamStarted);
      if (res.statusCode !== 200) return await this.#upstreamRefused(trace, res.statusCode, res.retryAfter);
      const received = res.body;
      let parsed: unknown;
      try {
        parsed = JSON.parse(received.toString('utf8'));
      } catch {
        throw upstreamMalformed();
      }
      await this.#settleUsage(trace, parsed);
      if (prepared.monitor !== undefined && !OPENAI_KINDS.has(kind)) {
        const features = numericFeatures(kind, body);
        const label = outputLabel(kind, parsed);
        this.#observe(
          prepared,
          principal,
          context,
          {
            ...(features === undefined ? {} : { features }),
            ...(label === undefined ? {} : { outputLabel: label }),
          },
          trace,
        );
      }
      let out = received;
      if (prepared.filter !== undefined) {
        const filtered = prepared.filter.filterJson(kind, parsed);
        trace.filter = filtered.counts;
        this.#countFilter(prepared.labels, filtered.counts);
        if (filtered.blocked) throw outputBlocked();
        if (filtered.counts.size > 0) out = Buffer.from(JSON.stringify(filtered.body));
      }
      trace.responseBytes = out.length;
      trace.responseHash = this.#hasher.hash(out);
      // A record that failed while this request was in flight withholds its output too.
      if (!this.#trail.accepts()) throw auditUnavailable();
      void this.#audit(request, trace, 'success', undefined, 200, started);
      reply.code(200).header('content-type', 'application/json; charset=utf-8').send(out);
    } catch (err) {
      // Refused before the model was called (the extraction monitor): nothing was generated, nothing stays charged.
      if (!upstreamCalled && trace.reservation !== undefined && trace.tokensUsed === undefined) {
        await this.limits.settle(trace.reservation, 0);
        trace.tokensUsed = 0;
      }
      await this.fail(request, reply, err, trace, started);
    }
  }

  #upstreamAnswered(trace: Trace, attempts: number, started: number): void {
    trace.attempts = attempts;
    this.metrics.upstreamLatency.observe(trace.labels, (performance.now() - started) / 1000);
  }

  /** A non-200 upstream answer: nothing was served, so the token reservation is released in full. */
  async #upstreamRefused(trace: Trace, status: number, retryAfter: unknown): Promise<never> {
    if (trace.reservation !== undefined) {
      await this.limits.settle(trace.reservation, 0);
      trace.tokensUsed = 0;
    }
    throw upstreamError(status, parseRetryAfter(retryAfter));
  }

  #context(request: FastifyRequest): GatewayRequestContext {
    const userAgent = request.headers['user-agent'];
    return { requestId: request.id, sourceIp: request.ip, ...(userAgent === undefined ? {} : { userAgent }) };
  }

  #observe(
    prepared: Prepared,
    principal: Principal,
    context: GatewayRequestContext,
    observation: { text?: string; features?: number[]; outputLabel?: string },
    trace: Trace,
  ): void {
    const monitor = prepared.monitor;
    if (monitor === undefined) return;
    const result = monitor.observe({
      principal: principal.id,
      // One actor spreading queries over the addresses of a block is seen as one (IPv4 /24, IPv6 /48).
      network: networkOf(context.sourceIp) ?? context.sourceIp,
      organisation: (this.#options.organisationOf ?? ((p: Principal) => p.groups?.[0] ?? p.id))(principal),
      at: Date.now(),
      ...observation,
    });
    trace.extraction = result;
    for (const v of result.verdicts) {
      if (v.score > 0) {
        this.metrics.detections.inc({
          ...prepared.labels,
          detector: v.detector,
          action: result.action,
        });
      }
    }
    switch (result.action) {
      case 'none':
      case 'alert':
        return;
      case 'throttle':
        throw extractionThrottled(this.#options.extractionThrottleSeconds ?? 60);
      case 'step-up':
        throw stepUpRequired();
      case 'block':
        throw extractionBlocked();
    }
  }

  #countFilter(labels: EndpointLabels, counts: FilterCounts): void {
    for (const [key, n] of counts) {
      const [entity = '', action = ''] = key.split(':');
      this.metrics.filterActions.inc({ ...labels, entity, action }, n);
    }
  }

  async #settleUsage(trace: Trace, parsed: unknown): Promise<void> {
    if (trace.reservation === undefined) return;
    const usage = isObject(parsed) ? parsed.usage : undefined;
    if (!isObject(usage)) return;
    const total =
      typeof usage.total_tokens === 'number'
        ? usage.total_tokens
        : (typeof usage.prompt_tokens === 'number' ? usage.prompt_tokens : 0) +
          (typeof usage.completion_tokens === 'number' ? usage.completion_tokens : 0);
    if (!Number.isInteger(total) || total < 0) return;
    // Some servers report the running usage in every streamed chunk: each report corrects the previous one, so
    // the reservation is settled once in all (against the last report), never refunded once per chunk.
    const charged = trace.tokensUsed ?? trace.reservation.reserved;
    trace.tokensUsed = total;
    await this.limits.settle({ ...trace.reservation, reserved: charged }, total);
  }

  /**
   * Streams an SSE response through the output filter. Events are re-serialised one by one as soon as the
   * privacy stream releases their text; the audit record is written before the final `[DONE]`, so a client
   * that saw `[DONE]` saw an audited response. A block or an audit failure ends the stream with an error event
   * instead of `[DONE]`.
   */
  #stream(
    kind: 'chat' | 'completions',
    prepared: Prepared,
    request: FastifyRequest,
    reply: FastifyReply,
    res: UpstreamResponse,
    trace: Trace,
    started: number,
  ): void {
    const contentType = String(res.headers['content-type'] ?? '');
    if (!contentType.startsWith('text/event-stream')) {
      res.body.destroy();
      throw upstreamMalformed();
    }
    const filter: StreamFilter | undefined = prepared.filter?.stream(kind);
    // Hashed as it is sent, not kept: a long or endless stream must not grow memory.
    const hmac = this.#hasher.start();
    const trail = this.#trail;
    let sent = 0;
    let finished = false;
    const emit = (text: string): string => {
      sent += Buffer.byteLength(text);
      hmac.update(text);
      return text;
    };
    const finish = (outcome: AuditOutcome, reason: string | undefined, status: number): Promise<boolean> => {
      finished = true;
      trace.filter = filter?.counts;
      if (filter !== undefined) this.#countFilter(prepared.labels, filter.counts);
      trace.responseBytes = sent;
      trace.responseHash = hmac.digest();
      return this.#audit(request, trace, outcome, reason, status, started);
    };
    const errorEvent = (err: GatewayError): string =>
      formatSseEvent(JSON.stringify({ error: { code: err.code, message: err.message } }));
    const settleUsage = (parsed: unknown): Promise<void> => this.#settleUsage(trace, parsed);
    const denials = this.metrics.denials;
    async function* events(): AsyncGenerator<string> {
      const parser = new SseParser();
      const decoder = new TextDecoder('utf-8', { fatal: false });
      let done = false;
      try {
        for await (const chunk of res.body) {
          for (const event of parser.push(decoder.decode(chunk as Buffer, { stream: true }))) {
            if (event.data === '[DONE]') {
              done = true;
              break;
            }
            let parsed: unknown;
            try {
              parsed = JSON.parse(event.data);
            } catch {
              throw upstreamMalformed();
            }
            if (!isObject(parsed)) throw upstreamMalformed();
            // A failure reported after the headers (`{error}`, or vLLM's older `{object: 'error', message}`):
            // the stream failed, and the message, which can echo the prompt, is not passed on.
            if (parsed.error !== undefined || parsed.object === 'error') throw upstreamStreamError();
            if (isObject(parsed.usage)) await settleUsage(parsed);
            if (filter !== undefined && !filter.chunk(parsed)) throw outputBlocked();
            yield emit(formatSseEvent(JSON.stringify(parsed)));
          }
          if (done) break;
        }
        // OpenAI-compatible servers end a complete stream with `[DONE]`; without it the answer may be cut off
        // (a crash, a proxy timeout), and the client must not take it as whole.
        if (!done) throw upstreamStreamCut();
        parser.end();
        const tail = filter?.finish();
        if (filter?.blocked === true) throw outputBlocked();
        if (tail !== undefined) yield emit(formatSseEvent(JSON.stringify(tail)));
        if (!trail.accepts()) {
          // An audit record failed while this stream ran: no `[DONE]`, the stream ends as failed.
          const failure = auditUnavailable();
          denials.inc({ ...prepared.labels, reason: failure.code });
          await finish('failure', failure.code, failure.httpStatus);
          yield errorEvent(failure);
          return;
        }
        void finish('success', undefined, 200);
        yield emit('data: [DONE]\n\n');
      } catch (err) {
        const failure = streamFailure(err);
        denials.inc({ ...prepared.labels, reason: failure.code });
        if (!finished) void finish('failure', failure.code, failure.httpStatus);
        yield errorEvent(failure);
      } finally {
        if (!done) res.body.destroy();
        // The client went away mid-stream: still one audit record per request.
        if (!finished) void finish('failure', 'client_closed', 499);
      }
    }
    reply
      .code(200)
      .header('content-type', 'text/event-stream; charset=utf-8')
      .header('cache-control', 'no-cache')
      .header('x-accel-buffering', 'no')
      .send(Readable.from(events(), { objectMode: false }));
  }

  /** Answers a failed request: audits it, counts it, sets Retry-After, and sends the error shape. */
  async fail(
    request: FastifyRequest,
    reply: FastifyReply,
    err: unknown,
    trace?: Trace,
    started = performance.now(),
  ): Promise<void> {
    // While the audit trail cannot record, every answer is 503 `audit_unavailable`, whatever else failed.
    const error = this.#trail.accepts()
      ? err instanceof GatewayError
        ? err
        : undefined
      : auditUnavailable();
    const status = error?.httpStatus ?? 500;
    // Refusals are `denied`; a withheld output (422), a client gone (499) and server-side failures are failures.
    const outcome: AuditOutcome =
      status < 500 && status !== 422 && error?.code !== 'client_closed' ? 'denied' : 'failure';
    const t = trace ?? emptyTrace(requestStates.get(request)?.principal);
    if (error !== undefined) {
      this.metrics.denials.inc({ ...t.labels, reason: error.code });
      if (error.code === 'rate_limited' || error.code === 'token_budget_exhausted') {
        this.metrics.limiterHits.inc({
          ...t.labels,
          limiter: error.code === 'rate_limited' ? 'requests' : 'tokens',
        });
      }
    }
    const recorded = this.#audit(request, t, outcome, error?.code ?? 'internal', status, started);
    // A refusal for want of an audit trail waits for its own record: that record is the probe that closes the
    // breaker, and waiting bounds the refusals pending while the recorder is stuck.
    if (error?.code === 'audit_unavailable') await recorded;
    const final = error ?? new GatewayError('internal', 500, 'internal error');
    if (final.retryAfterSeconds !== undefined) reply.header('retry-after', String(final.retryAfterSeconds));
    reply.code(final.httpStatus).send({ error: { code: final.code, message: final.message } });
  }

  /** Builds the request's audit event and hands it to the trail (write-behind; see `AuditTrail.hand`). */
  #audit(
    request: FastifyRequest,
    trace: Trace,
    outcome: AuditOutcome,
    reason: string | undefined,
    status: number,
    started: number,
  ): Promise<boolean> {
    const state = requestStates.get(request);
    if (state === undefined)
      requestStates.set(request, { principal: undefined, raw: undefined, audited: true });
    else state.audited = true;
    const latency = performance.now() - started;
    const endpoint = trace.endpoint;
    this.metrics.requests.inc({ ...trace.labels, status: String(status) });
    this.metrics.latency.observe(trace.labels, latency / 1000);
    const principal = trace.principal;
    const userAgent = request.headers['user-agent'];
    const details: Record<string, string | number | boolean> = {
      status,
      decision: outcome === 'success' ? 'allowed' : outcome,
      requestBytes: trace.requestBytes,
      responseBytes: trace.responseBytes,
      stream: trace.stream,
    };
    if (endpoint !== undefined) {
      details.endpoint = endpoint.name;
      details.model = endpoint.model;
      details.version = endpoint.version;
      details.environment = endpoint.environment;
    }
    if (trace.requestHash !== undefined) details.requestHash = trace.requestHash;
    if (trace.responseHash !== undefined) details.responseHash = trace.responseHash;
    if (trace.limiter.length > 0) {
      let limiter = '';
      for (const state of trace.limiter)
        limiter += `${limiter === '' ? '' : ','}${state.label}=${state.remaining}`;
      details.limiter = limiter;
    }
    if (trace.reservation !== undefined) details.tokensReserved = trace.reservation.reserved;
    if (trace.tokensUsed !== undefined) details.tokensUsed = trace.tokensUsed;
    if (trace.extraction !== undefined) {
      details.extractionAction = trace.extraction.action;
      const verdicts = trace.extraction.verdicts
        .filter((v) => v.score > 0)
        .map((v) => `${v.detector}=${v.score.toFixed(3)}`)
        .join(',');
      if (verdicts !== '') details.extractionVerdicts = verdicts;
    }
    const filtered = summarise(trace.filter);
    if (filtered !== '') details.filter = filtered;
    if (trace.attempts > 1) details.upstreamAttempts = trace.attempts;
    return this.#trail.hand({
      action: 'endpoint.invoke',
      principal:
        principal === undefined
          ? { id: 'anonymous', authMethod: 'none' }
          : { id: principal.id, authMethod: principal.authMethod },
      resource: endpoint === undefined ? 'endpoint:unknown' : `endpoint:${endpoint.name}`,
      outcome,
      ...(reason === undefined ? {} : { reason }),
      requestId: request.id,
      sourceIp: request.ip,
      // As the server records it: a 16 KiB header must not make every audit record 16 KiB.
      ...(userAgent === undefined ? {} : { userAgent: userAgent.slice(0, 256) }),
      latencyMs: Math.round(latency * 1000) / 1000,
      details,
    });
  }
}

function emptyTrace(principal: Principal | undefined): Trace {
  return {
    endpoint: undefined,
    labels: UNKNOWN_ENDPOINT,
    principal,
    limiter: [],
    reservation: undefined,
    tokensUsed: undefined,
    extraction: undefined,
    filter: undefined,
    requestBytes: 0,
    requestHash: undefined,
    responseBytes: 0,
    responseHash: undefined,
    attempts: 0,
    stream: false,
  };
}

const gateways = new WeakMap<FastifyInstance, Gateway>();

/** The gateway core behind a server made by `createGateway` (metrics registry, servable cache, limits). */
export function gatewayOf(app: FastifyInstance): Gateway {
  const gateway = gateways.get(app);
  if (gateway === undefined) throw new TypeError('not a gateway server');
  return gateway;
}

function fastifyErrorToGateway(err: unknown, bodyLimit: number): GatewayError {
  if (err instanceof GatewayError) return err;
  const e = err as { code?: string; statusCode?: number };
  if (e.code === 'FST_ERR_CTP_BODY_TOO_LARGE') return bodyTooLarge(bodyLimit);
  if (e.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE')
    return new GatewayError('unsupported_media_type', 415, 'the body must be application/json');
  if (e.code === 'FST_ERR_CTP_EMPTY_JSON_BODY') return invalidRequest('the body must be a JSON object');
  if (typeof e.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500) {
    return invalidRequest('malformed request');
  }
  return new GatewayError('internal', 500, 'internal error');
}

/**
 * `GET /health`, recognised from the raw request line: `request.routeOptions` builds an object on every access.
 * Anything else that the router would also send to the health route just needs credentials.
 */
function isHealthCheck(request: FastifyRequest): boolean {
  const { method, url } = request.raw;
  return method === 'GET' && (url === '/health' || url?.startsWith('/health?') === true);
}

/**
 * The standalone gateway (`warden gateway`): Fastify over TLS 1.3, authentication before the body is read,
 * every inference route of `GATEWAY_ROUTES`, `GET /health` without credentials, errors as
 * `{error:{code,message}}`. Metrics are served on a separate listener (`startMetricsServer`). `close()` on the
 * result stops the servable poller and the upstream pools too.
 */
export async function createGateway(options: StandaloneOptions): Promise<FastifyInstance> {
  const gateway = new Gateway(options);
  const serverOptions = {
    logger: options.logger === true ? { level: 'info', redact: ['req.headers.authorization'] } : false,
    bodyLimit: gateway.bodyLimit,
    exposeHeadRoutes: false,
    return503OnClosing: true,
    requestTimeout: 0,
    connectionTimeout: 0,
    keepAliveTimeout: 65_000,
    // One hop: the entry the fronting proxy appended to X-Forwarded-For. Trusting every hop would take the
    // left-most entry, which the client writes itself.
    trustProxy: options.trustProxy === true ? (_address: string, hop: number) => hop === 0 : false,
    routerOptions: { maxParamLength: 256 },
  } satisfies FastifyServerOptions;
  const app = (options.tls === undefined
    ? Fastify(serverOptions)
    : Fastify({
        ...serverOptions,
        https: {
          key: options.tls.key,
          cert: options.tls.cert,
          minVersion: 'TLSv1.3',
          ...(options.tls.requestClientCertificate === true
            ? { requestCert: true, rejectUnauthorized: false }
            : {}),
        },
      })) as unknown as FastifyInstance;
  gateways.set(app, gateway);

  app.removeAllContentTypeParsers();
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (request, body, done) => {
    const raw = body as Buffer;
    const state = requestStates.get(request);
    if (state !== undefined) state.raw = raw;
    try {
      done(null, JSON.parse(raw.toString('utf8')));
    } catch {
      done(invalidRequest('the body is not valid JSON'), undefined);
    }
  });

  // Authentication runs before the body is read: unauthenticated callers cannot make the gateway parse it.
  // Callback style, so a synchronous authenticator costs no promise per request.
  app.addHook('onRequest', (request, _reply, done) => {
    if (isHealthCheck(request)) {
      done();
      return;
    }
    const accept = (principal: Principal | undefined): void => {
      if (principal === undefined) {
        done(unauthenticated());
        return;
      }
      requestStates.set(request, { principal, raw: undefined, audited: false });
      done();
    };
    let result: ReturnType<Authenticate>;
    try {
      result = options.authenticate(request);
    } catch (err) {
      done(err instanceof Error ? err : unauthenticated());
      return;
    }
    if (result instanceof Promise) {
      result.then(accept, (err: unknown) => {
        done(err instanceof Error ? err : unauthenticated());
      });
    } else {
      accept(result);
    }
  });

  app.setErrorHandler(async (err, request, reply) => {
    if (requestStates.get(request)?.audited === true) {
      reply.code(500).send({ error: { code: 'internal', message: 'internal error' } });
      return;
    }
    await gateway.fail(request, reply, fastifyErrorToGateway(err, gateway.bodyLimit));
  });
  app.setNotFoundHandler(async (request, reply) => {
    await gateway.fail(request, reply, new GatewayError('route_not_found', 404, 'no such route'));
  });

  app.get('/health', () => Promise.resolve({ status: 'ok' }));
  for (const route of GATEWAY_ROUTES) {
    app.post(route.url, async (request, reply) => {
      await gateway.handle(route.kind, request, reply);
      return reply;
    });
  }
  app.addHook('onClose', async () => {
    await gateway.close();
  });
  await gateway.start();
  return app;
}

/**
 * Mounts the gateway's routes inside `warden server`: each route declares its Cedar action and resource, so the
 * server authenticates and authorises before the handler runs; the handler takes the principal from the
 * server (`principalOf`). The server's JSON schemas (the same as the gateway's) generate the OpenAPI document.
 */
export function registerGatewayRoutes(
  app: FastifyInstance,
  deps: { readonly gateway: Gateway; readonly principalOf: (request: FastifyRequest) => Principal },
): void {
  const { gateway } = deps;
  for (const route of GATEWAY_ROUTES) {
    const params = route.url.includes(':model')
      ? {
          type: 'object',
          additionalProperties: false,
          required: ['model'],
          properties: { model: { type: 'string', minLength: 1, maxLength: 256 } },
        }
      : undefined;
    app.route({
      method: 'POST',
      url: route.url,
      bodyLimit: gateway.bodyLimit,
      schema: {
        tags: ['gateway'],
        summary: route.summary,
        body: REQUEST_SCHEMAS[route.kind],
        ...(params === undefined ? {} : { params }),
      },
      config: {
        action: 'endpoint.invoke',
        resource: (request: FastifyRequest) => gateway.resourceOf(route.kind, request),
      },
      handler: async (request, reply) => {
        await gateway.handle(route.kind, request, reply, { principal: deps.principalOf(request) });
        return reply;
      },
    });
  }
}

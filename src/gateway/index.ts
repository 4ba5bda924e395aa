/**
 * Warden's secure inference gateway: an authenticated, authorised, rate-limited, audited proxy in front of
 * model servers (OpenAI-compatible and KServe v2 / JSON predict), with input checks, PII filtering of output
 * (streamed included), servable-version gating and Prometheus metrics. See docs/gateway.md.
 */
export { createGateway, Gateway, gatewayOf, GATEWAY_ROUTES, registerGatewayRoutes } from './gateway.ts';
export type {
  Authenticate,
  Authorize,
  GatewayOptions,
  GatewayRequestContext,
  InvocationTarget,
  StandaloneOptions,
} from './gateway.ts';
export {
  checkEndpoints,
  DEFAULT_MAX_BODY_BYTES,
  DEFAULT_MAX_PROMPT_CHARS,
  DEFAULT_MAX_TOKENS,
  endpointsFromFile,
  ENDPOINT_FILE_SCHEMA,
  GatewayConfigError,
  PROTOCOLS,
} from './config.ts';
export type {
  AllowedParameters,
  EndpointConfig,
  EndpointLimits,
  Protocol,
  UpstreamConfig,
  WindowLimit,
} from './config.ts';
export { GatewayError } from './errors.ts';
export { EXTRACTION_ACTIONS, networkOf } from './extraction-port.ts';
export type {
  ExtractionAction,
  ExtractionObservation,
  ExtractionObserver,
  ExtractionResult,
  ExtractionVerdict,
} from './extraction-port.ts';
export { estimateTokens, Limits, retryAfterSeconds } from './limits.ts';
export type { LimiterStore, TokenReservation, WindowState } from './limits.ts';
export { GatewayMetrics, startMetricsServer } from './metrics.ts';
export { OutputFilter, StreamFilter } from './output-filter.ts';
export type { FilterCounts, FilteredJson } from './output-filter.ts';
export { ALWAYS_SERVABLE, ServableCache } from './servable.ts';
export type { ServableCacheOptions, ServableSource } from './servable.ts';
export { DEFAULT_MAX_EVENT_CHARS, formatSseEvent, SseError, SseParser } from './sse.ts';
export type { SseEvent } from './sse.ts';
export { readBounded, Upstream } from './upstream.ts';
export type { UpstreamCall, UpstreamResponse } from './upstream.ts';
export {
  checkParameters,
  checkPromptLength,
  numericFeatures,
  promptText,
  REQUEST_SCHEMAS,
  ROUTE_KINDS,
  validateBody,
} from './validation.ts';
export type { RouteKind } from './validation.ts';
export { startDemoModel, creditScore, CREDIT_FEATURES, CREDIT_WEIGHTS, CREDIT_BIAS } from './demo-model.ts';
export type { DemoModel } from './demo-model.ts';
export { fileServableSource, loadStandaloneConfig, startStandaloneGateway, tokenAuth } from './standalone.ts';
export type { RunningGateway, StandaloneConfig, TokenEntry } from './standalone.ts';
export { ExtractionMonitor, ExtractionConfigError } from './extraction/index.ts';
export type { ExtractionOptions, ExtractionStats } from './extraction/index.ts';

/**
 * Warden's secure inference gateway: an authenticated, authorised, rate-limited, audited proxy in front of
 * model servers (OpenAI-compatible and KServe v2 / JSON predict), with input checks, PII filtering of output
 * (streamed included), servable-version gating and Prometheus metrics. See docs/gateway.md.
 */
export { createGateway, Gateway, gatewayOf, GATEWAY_ROUTES, registerGatewayRoutes } from './gateway.ts';
export { AuditTrail, ContentHasher, DEFAULT_MAX_PENDING_AUDIT } from './audit-trail.ts';
export type { AuditTrailOptions, IncrementalHash } from './audit-trail.ts';
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
export { EXTRACTION_ACTIONS } from './extraction-port.ts';
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
export { Upstream } from './upstream.ts';
export type { BufferedResponse, UpstreamCall, UpstreamResponse } from './upstream.ts';
export {
  checkParameters,
  checkPromptLength,
  numericFeatures,
  promptChars,
  promptText,
  REQUEST_SCHEMAS,
  ROUTE_KINDS,
  validateBody,
} from './validation.ts';
export type { RouteKind } from './validation.ts';
export { startDemoModel, creditScore, CREDIT_FEATURES, CREDIT_WEIGHTS, CREDIT_BIAS } from './demo-model.ts';
export type { DemoModel } from './demo-model.ts';
export { loadStandaloneConfig, startStandaloneGateway } from './standalone.ts';
export type { RunningGateway, StandaloneConfig, WardenConnection } from './standalone.ts';
export { WardenLink } from './remote-warden.ts';
export type { WardenLinkOptions } from './remote-warden.ts';
export {
  identityUnavailable,
  MAX_STATUS_TTL_MS,
  parseIntrospection,
  RemoteAuthenticator,
} from './remote-auth.ts';
export type { RemoteAuthOptions } from './remote-auth.ts';
export { RemoteClientCertificates } from './remote-ca.ts';
export type { RemoteClientCertificatesOptions } from './remote-ca.ts';
export { mirrorEntries, PolicyMirrorError, RemotePolicies } from './remote-policy.ts';
export type { RemotePoliciesOptions } from './remote-policy.ts';
export { RemoteServableSource } from './remote-servable.ts';
export type { RemoteServableOptions } from './remote-servable.ts';
export { ExtractionMonitor, ExtractionConfigError } from './extraction/index.ts';
export type { ExtractionOptions, ExtractionStats } from './extraction/index.ts';

import type { AuditRecorder } from '../audit/index.ts';
import {
  ALWAYS_SERVABLE,
  CREDIT_FEATURES,
  ExtractionMonitor,
  Gateway,
  DEFAULT_MAX_BODY_BYTES,
  checkEndpoints,
  startDemoModel,
} from '../gateway/index.ts';
import type { DemoModel, EndpointConfig, ServableSource } from '../gateway/index.ts';
import type { KmsService } from '../kms/index.ts';

/** The demo credit-scoring model's registry name and version; the name is also the endpoint's. */
export const DEMO_MODEL = { name: 'credit-score', version: '1' } as const;
const DEMO_CHAT = 'demo-chat';
const CONTENT_KEY = 'warden.audit-hasher';

export interface EmbeddedGatewayOptions {
  /** Configured endpoints; when none and `demo` is on, the demo model is started and served. */
  readonly endpoints: readonly EndpointConfig[];
  readonly demo: boolean;
  readonly environment: string;
  readonly kms: KmsService;
  readonly audit: AuditRecorder;
  /** The registry's view of servable versions (default: every configured version is servable). */
  readonly servable?: ServableSource;
}

export interface EmbeddedGateway {
  readonly gateway: Gateway;
  readonly endpoints: readonly EndpointConfig[];
  readonly demo: DemoModel | undefined;
  close(): Promise<void>;
}

/**
 * The inference gateway inside `warden server`: the server authenticates and authorises (Cedar,
 * `endpoint.invoke`), the gateway applies limits, input checks, extraction detection, output filtering and
 * audit. For several gateway nodes sharing limits through Redis, run `warden gateway` processes instead.
 */
export async function openEmbeddedGateway(options: EmbeddedGatewayOptions): Promise<EmbeddedGateway> {
  let demo: DemoModel | undefined;
  let endpoints = options.endpoints;
  if (endpoints.length === 0 && options.demo) {
    demo = await startDemoModel({ host: '127.0.0.1', port: 0 });
    endpoints = demoEndpoints(demo.url, options.environment);
  }
  checkEndpoints(endpoints);
  await options.kms.ensureSystemKey({ name: CONTENT_KEY, type: 'hmac-sha256', rotationPeriodDays: 0 });
  const auditKey = await options.kms.deriveAsSystem(CONTENT_KEY, 'warden gateway content hashes v1');
  const monitors = new Map<string, ExtractionMonitor>();
  const gateway = new Gateway({
    endpoints,
    servable: options.servable ?? ALWAYS_SERVABLE,
    audit: options.audit,
    auditKey,
    extraction: (endpoint) => {
      let monitor = monitors.get(endpoint.name);
      if (monitor === undefined) {
        monitor = new ExtractionMonitor({});
        monitors.set(endpoint.name, monitor);
      }
      return monitor;
    },
  });
  await gateway.start();
  return {
    gateway,
    endpoints,
    demo,
    async close() {
      await gateway.close();
      await demo?.close();
    },
  };
}

/**
 * The quickstart's endpoints: the credit-scoring model over KServe v2 (10 requests a minute per caller, so a
 * newcomer can see the limit) and a chat endpoint whose answers echo the prompt (so PII redaction shows).
 */
function demoEndpoints(url: string, environment: string): EndpointConfig[] {
  return [
    {
      name: DEMO_MODEL.name,
      protocol: 'kserve-v2',
      upstream: { url },
      model: DEMO_MODEL.name,
      version: DEMO_MODEL.version,
      environment,
      limits: { requests: [{ points: 10, durationSeconds: 60 }] },
    },
    {
      name: DEMO_CHAT,
      protocol: 'openai',
      upstream: { url },
      model: DEMO_CHAT,
      version: '1',
      environment,
      limits: { requests: [{ points: 30, durationSeconds: 60 }], maxTokens: 256 },
    },
  ];
}

/**
 * The largest request body any endpoint takes (the gateway routes are registered with it before the gateway
 * opens); the demo endpoints take the default.
 */
export function gatewayBodyLimit(endpoints: readonly EndpointConfig[]): number {
  return endpoints.reduce(
    (max, e) => Math.max(max, e.limits?.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES),
    DEFAULT_MAX_BODY_BYTES,
  );
}

/** The feature names the demo model takes, in order (for the printed example request). */
export const DEMO_FEATURES: readonly string[] = CREDIT_FEATURES;

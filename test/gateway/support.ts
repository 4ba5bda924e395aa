import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Agent } from 'undici';
import { request as undiciRequest } from 'undici';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { JsonLinesAuditRecorder } from '../../src/audit/index.ts';
import type { AuditRecorder } from '../../src/audit/index.ts';
import { createGateway } from '../../src/gateway/index.ts';
import type { EndpointConfig, ServableSource, StandaloneOptions } from '../../src/gateway/index.ts';
import type { Principal } from '../../src/kms/index.ts';

/** What a scripted upstream received. */
/**
 * The policy a standalone gateway's service account needs on its Warden server besides the `resource-server`
 * role (introspection): reading policies and servability (docs/gateway.md).
 */
export const GATEWAY_SERVICE_POLICY = `permit (
  principal in Warden::Role::"resource-server",
  action in [Warden::Action::"policy.read", Warden::Action::"model.read"],
  resource
);`;

export interface Received {
  readonly path: string;
  readonly headers: IncomingMessage['headers'];
  readonly body: Record<string, unknown>;
}

export interface UpstreamScript {
  /** Content of the chat/completions answer; default: echo of the last user message. */
  reply?: (body: Record<string, unknown>) => string;
  /** SSE pieces of a streamed answer; default: the reply in 3-character pieces. */
  pieces?: (body: Record<string, unknown>) => string[];
  /** Reported usage.total_tokens; default 10. */
  totalTokens?: number;
  /** Answer nothing for this long before the headers, ms. */
  delayMs?: number;
  /** The first N requests get this status (then normal answers). */
  failFirst?: { count: number; status: number };
  /** Raw answer overriding everything else. */
  raw?: (req: IncomingMessage, res: ServerResponse, body: Record<string, unknown>) => void;
}

export interface TestUpstream {
  readonly url: string;
  readonly received: Received[];
  script: UpstreamScript;
  close(): Promise<void>;
}

function lastUser(body: Record<string, unknown>): string {
  const messages = body.messages as { role: string; content: string }[] | undefined;
  if (messages !== undefined) return messages.at(-1)?.content ?? '';
  return typeof body.prompt === 'string' ? body.prompt : '';
}

/** A real local model server (HTTP, or HTTPS with `tls`) speaking the OpenAI and KServe shapes, scripted per test. */
export async function startUpstream(
  script: UpstreamScript = {},
  tls?: { key: string; cert: string; ca?: string; requestCert?: boolean },
): Promise<TestUpstream> {
  const received: Received[] = [];
  let failures = 0;
  const state = { script };
  const handler = (req: IncomingMessage, res: ServerResponse): void => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}') as Record<string, unknown>;
      received.push({ path: req.url ?? '', headers: req.headers, body });
      const s = state.script;
      const answer = (): void => {
        if (s.failFirst !== undefined && failures < s.failFirst.count) {
          failures++;
          res.writeHead(s.failFirst.status, { 'content-type': 'application/json' }).end('{"error":"busy"}');
          return;
        }
        if (s.raw !== undefined) {
          s.raw(req, res, body);
          return;
        }
        const url = req.url ?? '';
        const json = (value: unknown): void => {
          res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(value));
        };
        if (url.endsWith('/infer')) {
          json({
            model_name: 'm',
            outputs: [{ name: 'label', datatype: 'BYTES', shape: [1], data: ['approve'] }],
          });
        } else if (url.endsWith(':predict')) {
          json({ predictions: [0.25] });
        } else if (url.endsWith('/embeddings')) {
          json({
            object: 'list',
            data: [{ object: 'embedding', index: 0, embedding: [0.1, 0.2] }],
            usage: { prompt_tokens: 3, total_tokens: 3 },
          });
        } else {
          const reply = (s.reply ?? lastUser)(body);
          const usage = {
            prompt_tokens: 2,
            completion_tokens: (s.totalTokens ?? 10) - 2,
            total_tokens: s.totalTokens ?? 10,
          };
          const chat = url.endsWith('/chat/completions');
          if (body.stream === true) {
            res.writeHead(200, { 'content-type': 'text/event-stream' });
            const pieces = s.pieces?.(body) ?? reply.match(/[\s\S]{1,3}/g) ?? [];
            const base = {
              id: 'cmpl-1',
              object: chat ? 'chat.completion.chunk' : 'text_completion',
              created: 1,
              model: body.model,
            };
            for (const piece of pieces) {
              const choice = chat
                ? { index: 0, delta: { content: piece }, finish_reason: null }
                : { index: 0, text: piece, finish_reason: null };
              res.write(`data: ${JSON.stringify({ ...base, choices: [choice] })}\n\n`);
            }
            const last = chat
              ? { index: 0, delta: {}, finish_reason: 'stop' }
              : { index: 0, text: '', finish_reason: 'stop' };
            res.write(`data: ${JSON.stringify({ ...base, choices: [last] })}\n\n`);
            const opts = body.stream_options as { include_usage?: boolean } | undefined;
            if (opts?.include_usage === true)
              res.write(`data: ${JSON.stringify({ ...base, choices: [], usage })}\n\n`);
            res.end('data: [DONE]\n\n');
          } else if (chat) {
            json({
              id: 'c1',
              object: 'chat.completion',
              created: 1,
              model: body.model,
              choices: [{ index: 0, message: { role: 'assistant', content: reply }, finish_reason: 'stop' }],
              usage,
            });
          } else {
            json({
              id: 'c1',
              object: 'text_completion',
              created: 1,
              model: body.model,
              choices: [{ index: 0, text: reply, finish_reason: 'stop' }],
              usage,
            });
          }
        }
      };
      if (s.delayMs !== undefined) setTimeout(answer, s.delayMs);
      else answer();
    });
  };
  const server: Server =
    tls === undefined
      ? createServer(handler)
      : createHttpsServer(
          {
            key: tls.key,
            cert: tls.cert,
            ...(tls.ca === undefined ? {} : { ca: tls.ca }),
            requestCert: tls.requestCert ?? false,
            rejectUnauthorized: tls.requestCert ?? false,
          },
          handler,
        );
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : 0;
  return {
    url: `${tls === undefined ? 'http' : 'https'}://127.0.0.1:${port}`,
    received,
    get script() {
      return state.script;
    },
    set script(value: UpstreamScript) {
      state.script = value;
      failures = 0;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => {
          resolve();
        });
      }),
  };
}

/** A servable source the test flips: a registry in miniature (epoch + quarantined set). */
export class TestRegistry implements ServableSource {
  #epoch = 0;
  readonly quarantined = new Set<string>();
  epochCalls = 0;
  epoch(): number {
    this.epochCalls++;
    return this.#epoch;
  }
  servable(model: string, version: string): boolean {
    return !this.quarantined.has(`${model}@${version}`);
  }
  quarantine(model: string, version: string): void {
    this.quarantined.add(`${model}@${version}`);
    this.#epoch++;
  }
}

export const PRINCIPALS: Record<string, Principal> = {
  'token-alice': { id: 'user:alice', roles: ['user'], authMethod: 'token' },
  'token-bob': { id: 'user:bob', roles: ['user'], authMethod: 'token' },
  'token-eve': { id: 'user:eve', roles: [], authMethod: 'token' },
  'token-carol': { id: 'user:carol', roles: ['user'], authMethod: 'token' },
};

export function bearerAuthenticate(request: FastifyRequest): Principal | undefined {
  const header = request.headers.authorization;
  if (header?.startsWith('Bearer ') !== true) return undefined;
  return PRINCIPALS[header.slice(7)];
}

/** eve may authenticate but invoke nothing. */
export function roleAuthorize(principal: Principal): Promise<boolean> {
  return Promise.resolve(principal.roles.includes('user'));
}

export interface TestGateway {
  readonly app: FastifyInstance;
  readonly url: string;
  readonly auditPath: string;
  readonly registry: TestRegistry;
  auditEvents(): Record<string, unknown>[];
  auditText(): string;
  close(): Promise<void>;
}

export function endpoint(
  name: string,
  upstream: string,
  extra: Partial<EndpointConfig> = {},
): EndpointConfig {
  return {
    name,
    protocol: 'openai',
    upstream: { url: upstream, retries: 2, timeoutMs: 2000 },
    model: name,
    version: '1',
    environment: 'prod',
    ...extra,
  };
}

export async function startGateway(
  endpoints: EndpointConfig[],
  options: Partial<StandaloneOptions> & { audit?: AuditRecorder } = {},
): Promise<TestGateway> {
  const dir = mkdtempSync(path.join(tmpdir(), 'warden-gw-'));
  const auditPath = path.join(dir, 'audit.jsonl');
  const audit = options.audit ?? (await JsonLinesAuditRecorder.open(auditPath));
  const registry = new TestRegistry();
  const app = await createGateway({
    endpoints,
    authenticate: bearerAuthenticate,
    authorize: roleAuthorize,
    servable: registry,
    audit,
    auditKey: randomBytes(32),
    ...options,
  });
  const address = await app.listen({ port: 0, host: '127.0.0.1' });
  const readAudit = (): string => {
    try {
      return readFileSync(auditPath, 'utf8');
    } catch {
      return '';
    }
  };
  return {
    app,
    url: address,
    auditPath,
    registry,
    auditText: readAudit,
    auditEvents: () =>
      readAudit()
        .split('\n')
        .filter((l) => l !== '')
        .map((l) => JSON.parse(l) as Record<string, unknown>),
    close: async () => {
      await app.close();
      await audit.close().catch(() => undefined);
    },
  };
}

export interface Response {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly text: string;
  readonly json: Record<string, unknown> & { error?: { code: string; message: string } };
}

export async function post(
  url: string,
  body: unknown,
  options: { token?: string | null; dispatcher?: Agent; headers?: Record<string, string> } = {},
): Promise<Response> {
  const token = options.token === undefined ? 'token-alice' : options.token;
  const res = await undiciRequest(url, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      ...(token === null ? {} : { authorization: `Bearer ${token}` }),
      ...options.headers,
    },
    body: typeof body === 'string' ? body : JSON.stringify(body),
    ...(options.dispatcher === undefined ? {} : { dispatcher: options.dispatcher }),
  });
  const text = await res.body.text();
  let json: Response['json'] = {};
  try {
    json = JSON.parse(text) as Response['json'];
  } catch {
    // SSE or empty bodies are read through `text`.
  }
  return { status: res.statusCode, headers: res.headers, text, json };
}

export function chatBody(content: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { model: 'chat', messages: [{ role: 'user', content }], ...extra };
}

/** The `data:` payloads of an SSE body, parsed (except `[DONE]`). */
export function sseData(text: string): unknown[] {
  return text
    .split('\n\n')
    .filter((e) => e.startsWith('data: '))
    .map((e) => e.slice(6))
    .map((d) => (d === '[DONE]' ? d : (JSON.parse(d) as unknown)));
}

export function streamedContent(text: string): string {
  let out = '';
  for (const d of sseData(text)) {
    if (d === '[DONE]') continue;
    const choices = (d as { choices?: { delta?: { content?: string }; text?: string }[] }).choices ?? [];
    for (const c of choices) out += c.delta?.content ?? c.text ?? '';
  }
  return out;
}

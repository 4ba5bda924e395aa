import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';

/**
 * The demo model put behind the gateway by the quickstart: a credit-scoring logistic regression with fixed,
 * documented weights, served over plain HTTP on loopback with KServe v2 (`/v2/models/credit-score/infer`),
 * JSON predict (`/v1/models/credit-score:predict`) and an OpenAI-compatible chat endpoint that answers from a
 * template echoing the applicant's message (so the gateway's PII redaction of output can be seen), streamed
 * or not. It is a demonstration upstream, not a credit model.
 */
export const CREDIT_FEATURES = [
  'income_k',
  'debt_to_income',
  'years_employed',
  'late_payments_12m',
  'credit_utilisation',
] as const;

/** Log-odds of default per unit of each feature, in `CREDIT_FEATURES` order. */
export const CREDIT_WEIGHTS: readonly number[] = [-0.02, 3.0, -0.15, 0.6, 2.0];
export const CREDIT_BIAS = -1.5;
export const DEMO_MODEL_NAME = 'credit-score';

/** Probability of default for one applicant and the decision at 0.5. */
export function creditScore(features: readonly number[]): {
  probability: number;
  label: 'approve' | 'decline';
} {
  if (features.length !== CREDIT_WEIGHTS.length || features.some((f) => !Number.isFinite(f))) {
    throw new RangeError(`expected ${CREDIT_WEIGHTS.length} finite features`);
  }
  let z = CREDIT_BIAS;
  for (const [i, w] of CREDIT_WEIGHTS.entries()) z += w * (features[i] ?? 0);
  const probability = 1 / (1 + Math.exp(-z));
  return { probability, label: probability >= 0.5 ? 'decline' : 'approve' };
}

export interface DemoModel {
  readonly url: string;
  readonly server: Server;
  close(): Promise<void>;
}

const MAX_BODY = 1024 * 1024;

class BadRequest extends Error {}

function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) {
        reject(new BadRequest('body too large'));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => {
      try {
        const value: unknown = JSON.parse(Buffer.concat(chunks).toString('utf8'));
        if (typeof value !== 'object' || value === null || Array.isArray(value))
          throw new BadRequest('not an object');
        resolve(value as Record<string, unknown>);
      } catch {
        reject(new BadRequest('invalid JSON'));
      }
    });
    req.on('error', reject);
  });
}

function rows(data: unknown): number[][] {
  if (!Array.isArray(data)) throw new BadRequest('data must be an array');
  const flat = (data as unknown[]).flat(2);
  if (flat.some((v) => typeof v !== 'number')) throw new BadRequest('features must be numbers');
  const n = CREDIT_WEIGHTS.length;
  if (flat.length === 0 || flat.length % n !== 0) throw new BadRequest(`rows of ${n} features expected`);
  const out: number[][] = [];
  for (let i = 0; i < flat.length; i += n) out.push(flat.slice(i, i + n) as number[]);
  return out;
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

const tokens = (text: string): number => Math.max(1, Math.ceil(text.length / 4));

function lastUserText(messages: unknown): string {
  if (!Array.isArray(messages)) return '';
  for (let i = messages.length - 1; i >= 0; i--) {
    const m = messages[i] as { role?: unknown; content?: unknown };
    if (m.role === 'user' && typeof m.content === 'string') return m.content;
  }
  return '';
}

/** The templated answer: echoes the message and scores five comma-separated numbers if it contains them. */
export function demoReply(message: string): string {
  const numbers = /(-?\d+(?:\.\d+)?(?:\s*,\s*-?\d+(?:\.\d+)?){4})/.exec(message);
  let assessment = '';
  if (numbers?.[1] !== undefined) {
    const values = numbers[1].split(',').map((s) => Number(s.trim()));
    const { probability, label } = creditScore(values);
    assessment = ` Assessment: probability of default ${probability.toFixed(3)}, decision ${label}.`;
  }
  return `Thank you for your application. You wrote: "${message}".${assessment} We will reply to the contact details in your message.`;
}

async function chat(req: IncomingMessage, res: ServerResponse, tokenDelayMs: number): Promise<void> {
  const body = await readJson(req);
  const prompt = lastUserText(body.messages);
  const reply = demoReply(prompt);
  const model = typeof body.model === 'string' ? body.model : DEMO_MODEL_NAME;
  const id = `chatcmpl-demo-${Date.now().toString(36)}`;
  const created = Math.floor(Date.now() / 1000);
  const usage = { prompt_tokens: tokens(prompt), completion_tokens: tokens(reply), total_tokens: 0 };
  usage.total_tokens = usage.prompt_tokens + usage.completion_tokens;
  if (body.stream !== true) {
    send(res, 200, {
      id,
      object: 'chat.completion',
      created,
      model,
      choices: [{ index: 0, message: { role: 'assistant', content: reply }, finish_reason: 'stop' }],
      usage,
    });
    return;
  }
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
  const chunk = (choices: unknown[], extra: Record<string, unknown> = {}): string =>
    `data: ${JSON.stringify({ id, object: 'chat.completion.chunk', created, model, choices, ...extra })}\n\n`;
  res.write(chunk([{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }]));
  // Four-character pieces, like sub-word tokens: values in the echo are split across events.
  for (let i = 0; i < reply.length; i += 4) {
    if (tokenDelayMs > 0) await new Promise((r) => setTimeout(r, tokenDelayMs));
    res.write(chunk([{ index: 0, delta: { content: reply.slice(i, i + 4) }, finish_reason: null }]));
  }
  res.write(chunk([{ index: 0, delta: {}, finish_reason: 'stop' }]));
  const options = body.stream_options as { include_usage?: unknown } | undefined;
  if (options?.include_usage === true) res.write(chunk([], { usage }));
  res.end('data: [DONE]\n\n');
}

async function route(req: IncomingMessage, res: ServerResponse, tokenDelayMs: number): Promise<void> {
  const url = req.url ?? '';
  if (req.method === 'GET' && url === '/v2/health/ready') {
    send(res, 200, { ready: true });
    return;
  }
  if (req.method === 'GET' && url === `/v2/models/${DEMO_MODEL_NAME}`) {
    send(res, 200, {
      name: DEMO_MODEL_NAME,
      versions: ['1'],
      platform: 'warden-demo',
      inputs: [{ name: 'features', datatype: 'FP32', shape: [-1, CREDIT_WEIGHTS.length] }],
      outputs: [
        { name: 'probability', datatype: 'FP32', shape: [-1] },
        { name: 'label', datatype: 'BYTES', shape: [-1] },
      ],
    });
    return;
  }
  if (req.method !== 'POST') {
    send(res, 405, { error: 'method not allowed' });
    return;
  }
  if (url === `/v2/models/${DEMO_MODEL_NAME}/infer`) {
    const body = await readJson(req);
    const inputs = body.inputs as { data?: unknown }[] | undefined;
    const scored = rows(inputs?.[0]?.data).map(creditScore);
    send(res, 200, {
      model_name: DEMO_MODEL_NAME,
      model_version: '1',
      ...(typeof body.id === 'string' ? { id: body.id } : {}),
      outputs: [
        {
          name: 'probability',
          datatype: 'FP32',
          shape: [scored.length],
          data: scored.map((s) => s.probability),
        },
        { name: 'label', datatype: 'BYTES', shape: [scored.length], data: scored.map((s) => s.label) },
      ],
    });
    return;
  }
  if (url === `/v1/models/${DEMO_MODEL_NAME}:predict`) {
    const body = await readJson(req);
    const scored = rows(body.instances ?? body.inputs).map(creditScore);
    send(res, 200, {
      predictions: scored.map((s) => ({ probability: s.probability, label: s.label })),
    });
    return;
  }
  if (url === '/v1/chat/completions') return chat(req, res, tokenDelayMs);
  send(res, 404, { error: 'not found' });
}

/** Starts the demo model on `host:port` (loopback and a free port by default). */
export async function startDemoModel(
  options: { host?: string; port?: number; tokenDelayMs?: number } = {},
): Promise<DemoModel> {
  const tokenDelayMs = options.tokenDelayMs ?? 0;
  const server = createServer((req, res) => {
    route(req, res, tokenDelayMs).catch((err: unknown) => {
      if (res.headersSent) res.destroy();
      else
        send(res, err instanceof BadRequest || err instanceof RangeError ? 400 : 500, {
          error: 'bad request',
        });
    });
  });
  const host = options.host ?? '127.0.0.1';
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, host, () => {
      resolve();
    });
  });
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : 0;
  return {
    url: `http://${host}:${port}`,
    server,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => {
          resolve();
        });
      }),
  };
}

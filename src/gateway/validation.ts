import { Ajv } from 'ajv';
import type { ErrorObject, ValidateFunction } from 'ajv';
import type { AllowedParameters } from './config.ts';
import { invalidRequest, parameterNotAllowed, promptTooLong } from './errors.ts';

/** The request kinds the gateway understands; each has a strict JSON schema. */
export const ROUTE_KINDS = ['chat', 'completions', 'embeddings', 'kserve-v2', 'predict'] as const;
export type RouteKind = (typeof ROUTE_KINDS)[number];

const MAX_ITEMS = 4096;
const str = { type: 'string', maxLength: 1_048_576 } as const;
const stop = { anyOf: [str, { type: 'array', items: str, maxItems: 16 }] } as const;
const logitBias = {
  type: 'object',
  maxProperties: 1024,
  propertyNames: { pattern: '^[0-9]{1,9}$' },
  additionalProperties: { type: 'number', minimum: -100, maximum: 100 },
} as const;
const streamOptions = {
  type: 'object',
  additionalProperties: false,
  properties: { include_usage: { type: 'boolean' } },
} as const;
const sampling = {
  temperature: { type: 'number', minimum: 0, maximum: 2 },
  top_p: { type: 'number', minimum: 0, maximum: 1 },
  top_k: { type: 'integer', minimum: -1 },
  min_p: { type: 'number', minimum: 0, maximum: 1 },
  repetition_penalty: { type: 'number', minimum: 0 },
  presence_penalty: { type: 'number', minimum: -2, maximum: 2 },
  frequency_penalty: { type: 'number', minimum: -2, maximum: 2 },
  n: { type: 'integer', minimum: 1, maximum: 16 },
  seed: { type: 'integer' },
  stop,
  stream: { type: 'boolean' },
  stream_options: streamOptions,
  user: { type: 'string', maxLength: 256 },
  max_tokens: { type: 'integer', minimum: 1 },
  logit_bias: logitBias,
} as const;

const contentPart = {
  type: 'object',
  required: ['type'],
  properties: { type: { type: 'string', maxLength: 64 }, text: str },
} as const;

const CHAT_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  required: ['model', 'messages'],
  properties: {
    model: { type: 'string', minLength: 1, maxLength: 256 },
    messages: {
      type: 'array',
      minItems: 1,
      maxItems: MAX_ITEMS,
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['role'],
        properties: {
          role: { enum: ['system', 'developer', 'user', 'assistant', 'tool'] },
          content: { anyOf: [str, { type: 'null' }, { type: 'array', maxItems: 256, items: contentPart }] },
          name: { type: 'string', maxLength: 256 },
          tool_call_id: { type: 'string', maxLength: 256 },
          tool_calls: { type: 'array', maxItems: 128, items: { type: 'object' } },
        },
      },
    },
    ...sampling,
    max_completion_tokens: { type: 'integer', minimum: 1 },
    logprobs: { type: 'boolean' },
    top_logprobs: { type: 'integer', minimum: 0, maximum: 20 },
    response_format: { type: 'object' },
    tools: { type: 'array', maxItems: 128, items: { type: 'object' } },
    tool_choice: { anyOf: [str, { type: 'object' }] },
    parallel_tool_calls: { type: 'boolean' },
  },
} as const;

const COMPLETIONS_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  required: ['model', 'prompt'],
  properties: {
    model: { type: 'string', minLength: 1, maxLength: 256 },
    // Token-id prompts are refused: they bypass the prompt checks and are a classic probing tool.
    prompt: { anyOf: [str, { type: 'array', minItems: 1, maxItems: 64, items: str }] },
    suffix: str,
    echo: { type: 'boolean' },
    best_of: { type: 'integer', minimum: 1, maximum: 16 },
    logprobs: { type: 'integer', minimum: 0, maximum: 20 },
    ...sampling,
  },
} as const;

const EMBEDDINGS_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  required: ['model', 'input'],
  properties: {
    model: { type: 'string', minLength: 1, maxLength: 256 },
    input: { anyOf: [str, { type: 'array', minItems: 1, maxItems: 2048, items: str }] },
    encoding_format: { enum: ['float', 'base64'] },
    dimensions: { type: 'integer', minimum: 1, maximum: 65_536 },
    user: { type: 'string', maxLength: 256 },
  },
} as const;

const tensorData = {
  type: 'array',
  items: { type: ['number', 'string', 'boolean', 'array'] },
} as const;
const parameters = { type: 'object', maxProperties: 64 } as const;

const KSERVE_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  required: ['inputs'],
  properties: {
    id: { type: 'string', maxLength: 256 },
    parameters,
    inputs: {
      type: 'array',
      minItems: 1,
      maxItems: 64,
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['name', 'shape', 'datatype', 'data'],
        properties: {
          name: { type: 'string', minLength: 1, maxLength: 256 },
          shape: { type: 'array', maxItems: 16, items: { type: 'integer', minimum: 0 } },
          datatype: {
            enum: [
              'BOOL',
              'UINT8',
              'UINT16',
              'UINT32',
              'UINT64',
              'INT8',
              'INT16',
              'INT32',
              'INT64',
              'FP16',
              'FP32',
              'FP64',
              'BYTES',
              'BF16',
            ],
          },
          parameters,
          data: tensorData,
        },
      },
    },
    outputs: {
      type: 'array',
      maxItems: 64,
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['name'],
        properties: { name: { type: 'string', minLength: 1, maxLength: 256 }, parameters },
      },
    },
  },
} as const;

const PREDICT_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  properties: {
    signature_name: { type: 'string', maxLength: 256 },
    instances: { type: 'array', minItems: 1, maxItems: MAX_ITEMS },
    inputs: { type: ['array', 'object'] },
  },
  oneOf: [{ required: ['instances'] }, { required: ['inputs'] }],
} as const;

/** The JSON schema of each request kind (also given to Fastify when mounted, for the OpenAPI document). */
export const REQUEST_SCHEMAS: Readonly<Record<RouteKind, Record<string, unknown>>> = {
  chat: CHAT_SCHEMA,
  completions: COMPLETIONS_SCHEMA,
  embeddings: EMBEDDINGS_SCHEMA,
  'kserve-v2': KSERVE_SCHEMA,
  predict: PREDICT_SCHEMA,
};

const ajv = new Ajv({ allErrors: false, strict: false, coerceTypes: false, useDefaults: false });
const VALIDATORS: Readonly<Record<RouteKind, ValidateFunction>> = {
  chat: ajv.compile(CHAT_SCHEMA),
  completions: ajv.compile(COMPLETIONS_SCHEMA),
  embeddings: ajv.compile(EMBEDDINGS_SCHEMA),
  'kserve-v2': ajv.compile(KSERVE_SCHEMA),
  predict: ajv.compile(PREDICT_SCHEMA),
};

function describe(error: ErrorObject | undefined): string {
  if (error === undefined) return 'invalid request body';
  // The message names the location and the rule, never the offending value.
  const where = error.instancePath === '' ? 'body' : error.instancePath;
  return `${where}: ${error.message ?? 'invalid'}`;
}

/** Deepest nesting accepted in tensor data: shape has at most 16 dimensions. */
const MAX_DEPTH = 17;

function checkTensorData(value: unknown, depth: number): void {
  if (depth > MAX_DEPTH) throw invalidRequest('tensor data nested too deeply');
  if (Array.isArray(value)) {
    for (const item of value) checkTensorData(item, depth + 1);
  } else if (typeof value !== 'number' && typeof value !== 'string' && typeof value !== 'boolean') {
    throw invalidRequest('tensor data must be numbers, strings or booleans');
  }
}

/** Validates a parsed body against its protocol's schema. Throws `invalid_request` (400). */
export function validateBody(kind: RouteKind, body: unknown): void {
  const validate = VALIDATORS[kind];
  if (!validate(body)) throw invalidRequest(describe(validate.errors?.[0]));
  if (kind === 'kserve-v2') {
    for (const input of (body as { inputs: { data: unknown }[] }).inputs) checkTensorData(input.data, 0);
  } else if (kind === 'predict') {
    const b = body as { instances?: unknown; inputs?: unknown };
    checkTensorData(b.instances ?? (Array.isArray(b.inputs) ? b.inputs : Object.values(b.inputs ?? {})), 0);
  }
}

/**
 * Refuses the parameters that expose token probabilities or steer them (`logprobs`, `top_logprobs`,
 * `logit_bias`): they make model extraction and membership inference far cheaper. A neutral value (false, 0,
 * an empty bias map) is accepted — except a completion's `logprobs: 0`, which is not neutral: legacy completions
 * return the sampled tokens with their logprobs for any value (0 only means no alternatives), and with `echo`
 * the prompt's too.
 */
export function checkParameters(
  kind: RouteKind,
  body: Record<string, unknown>,
  allow: AllowedParameters,
): void {
  if (kind !== 'chat' && kind !== 'completions') return;
  const logprobs = body.logprobs;
  // Chat's `logprobs` is a boolean (false asks for nothing); a completion's is a count, and 0 still asks for some.
  if (!allow.logprobs && logprobs !== undefined && logprobs !== false) {
    throw parameterNotAllowed('logprobs');
  }
  const top = body.top_logprobs;
  if (!allow.topLogprobs && top !== undefined && top !== 0) throw parameterNotAllowed('top_logprobs');
  const bias = body.logit_bias;
  if (!allow.logitBias && bias !== undefined && Object.keys(bias as object).length > 0) {
    throw parameterNotAllowed('logit_bias');
  }
}

function partsText(content: unknown): string {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return '';
  let out = '';
  for (const part of content as { text?: unknown }[])
    if (typeof part.text === 'string') out += `${part.text}\n`;
  return out;
}

/** The prompt text of a validated body: what the prompt limit, token estimate and extraction monitor see. */
export function promptText(kind: RouteKind, body: Record<string, unknown>): string {
  switch (kind) {
    case 'chat':
      return (body.messages as { content?: unknown }[]).map((m) => partsText(m.content)).join('\n');
    case 'completions':
    case 'embeddings': {
      const value = kind === 'completions' ? body.prompt : body.input;
      return Array.isArray(value) ? value.join('\n') : (value as string);
    }
    case 'kserve-v2':
    case 'predict':
      return '';
  }
}

/** Request fields besides the prompt text that the model reads: tool and function definitions, the schema of
 * the answer, a forced tool choice. Counted by their JSON length. */
const CHAT_INSTRUCTION_FIELDS = ['tools', 'functions', 'response_format', 'tool_choice'] as const;

/**
 * How many characters of input a request gives the model: the prompt text plus everything else it reads (message
 * names, earlier tool calls and their arguments, tool definitions, the answer's schema, a completion's `suffix`).
 * What the prompt-length limit and the token reservation count, so that text moved out of `content` into those
 * fields is not free.
 */
export function promptChars(kind: RouteKind, body: Record<string, unknown>, prompt: string): number {
  let n = prompt.length;
  const json = (v: unknown): number => (v === undefined || v === null ? 0 : JSON.stringify(v).length);
  if (kind === 'chat') {
    for (const m of body.messages as Record<string, unknown>[]) {
      if (typeof m.name === 'string') n += m.name.length;
      n += json(m.tool_calls) + json(m.function_call);
    }
    for (const field of CHAT_INSTRUCTION_FIELDS) if (typeof body[field] === 'object') n += json(body[field]);
  } else if (kind === 'completions' && typeof body.suffix === 'string') {
    n += body.suffix.length;
  }
  return n;
}

export function checkPromptLength(chars: number, maxChars: number): void {
  if (chars > maxChars) throw promptTooLong(maxChars);
}

/** Numeric features of a tabular request (first input / instances, flattened), for the extraction monitor. */
export function numericFeatures(
  kind: RouteKind,
  body: Record<string, unknown>,
  limit = 4096,
): number[] | undefined {
  let source: unknown;
  if (kind === 'kserve-v2') source = (body.inputs as { data: unknown }[])[0]?.data;
  else if (kind === 'predict') source = body.instances ?? body.inputs;
  else return undefined;
  const out: number[] = [];
  const walk = (v: unknown): void => {
    if (out.length >= limit) return;
    if (typeof v === 'number') out.push(v);
    else if (Array.isArray(v)) for (const x of v) walk(x);
  };
  walk(source);
  return out.length > 0 ? out : undefined;
}

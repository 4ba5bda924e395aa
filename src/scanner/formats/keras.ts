import type { ScanContext } from '../context.ts';
import { parseJson, JsonObject, JsonSyntaxError, type JsonValue } from '../json.ts';
import { classifyGlobal } from '../pickle/globals.ts';
import { decodeUtf8Strict } from '../source.ts';

/**
 * Keras v3 `.keras` archives: `config.json` describes every object by module, class_name and registered_name,
 * and Keras imports and instantiates what it names. Lambda layers carry marshalled Python bytecode.
 */

/** Names whose presence in Lambda bytecode means it reaches for processes, code or the filesystem. */
const DANGEROUS_CODE_NAMES = new Set([
  'os',
  'posix',
  'nt',
  'sys',
  'subprocess',
  'system',
  'popen',
  'Popen',
  'spawnv',
  'execv',
  'check_output',
  'exec',
  'eval',
  'compile',
  '__import__',
  'import_module',
  'importlib',
  'builtins',
  '__builtins__',
  'getattr',
  'open',
  'socket',
  'pty',
  'shutil',
  'urllib',
  'requests',
  'marshal',
  'pickle',
]);

/**
 * Identifiers stored in marshalled code: marshal writes names as typed strings ('z'/'Z' with a one-byte
 * length, 'a'/'A'/'u'/'t'/'s' with four bytes), optionally with the 0x80 reference flag. Reading every
 * such record without running or fully decoding the code object is enough to see which names it uses.
 */
export function marshalNames(code: Uint8Array): Set<string> {
  const names = new Set<string>();
  for (let i = 0; i < code.length; i++) {
    const t = (code[i] ?? 0) & 0x7f;
    let len: number;
    let start: number;
    if (t === 0x7a || t === 0x5a) {
      len = code[i + 1] ?? 0;
      start = i + 2;
    } else if (t === 0x61 || t === 0x41 || t === 0x75 || t === 0x74 || t === 0x73) {
      len =
        (code[i + 1] ?? 0) |
        ((code[i + 2] ?? 0) << 8) |
        ((code[i + 3] ?? 0) << 16) |
        ((code[i + 4] ?? 0) << 24);
      start = i + 5;
    } else continue;
    if (len < 1 || len > 256 || start + len > code.length) continue;
    const s = String.fromCharCode(...code.subarray(start, start + len));
    if (/^[A-Za-z_][A-Za-z0-9_.]*$/.test(s)) names.add(s);
  }
  return names;
}

/** Dangerous names used by base64 marshalled Lambda code. */
export function dangerousLambdaNames(b64: string): string[] {
  const names = marshalNames(Buffer.from(b64, 'base64'));
  return [...names].filter((n) => n.split('.').some((seg) => DANGEROUS_CODE_NAMES.has(seg)));
}

function str(v: JsonValue | undefined): string | null {
  return typeof v === 'string' ? v : null;
}

/** Base64 code strings of a Lambda config, in the Keras 3 (`__lambda__` object) and Keras 2 (list) forms. */
function lambdaCode(fn: JsonValue | undefined): string[] {
  if (fn instanceof JsonObject) {
    const cfg = fn.map.get('config');
    if (cfg instanceof JsonObject) {
      const code = str(cfg.map.get('code'));
      return code === null ? [] : [code];
    }
    return [];
  }
  if (Array.isArray(fn)) {
    const code = str(fn[0]);
    return code === null ? [] : [code];
  }
  const code = str(fn ?? null);
  return code === null ? [] : [code];
}

function reportLambda(ctx: ScanContext, where: string, codes: readonly string[]): void {
  ctx.add('keras.lambda-layer', `${where} carries marshalled bytecode`);
  for (const c of codes) {
    const bad = dangerousLambdaNames(c);
    if (bad.length > 0) ctx.add('keras.lambda-dangerous-code', `${where} bytecode uses ${bad.join(', ')}`);
  }
}

function isKerasModule(module: string): boolean {
  return module === 'keras' || module.startsWith('keras.');
}

function walk(ctx: ScanContext, v: JsonValue, path: string): void {
  if (Array.isArray(v)) {
    v.forEach((x, i) => {
      walk(ctx, x, `${path}[${i}]`);
    });
    return;
  }
  if (!(v instanceof JsonObject)) return;
  const m = v.map;
  const className = str(m.get('class_name'));
  const module = str(m.get('module'));
  const registered = str(m.get('registered_name'));
  const config = m.get('config');
  const where = `${path}${className === null ? '' : ` (${className})`}`;
  const fn = config instanceof JsonObject ? config.map.get('function') : undefined;
  const fnIsLambdaObject = fn instanceof JsonObject && fn.map.get('class_name') === '__lambda__';
  // A Keras 3 Lambda layer's code sits in a nested __lambda__ object, reported when the walk reaches it.
  if (className === 'Lambda' && !fnIsLambdaObject) {
    reportLambda(ctx, `Lambda layer at ${path}`, lambdaCode(fn));
  } else if (className === '__lambda__') {
    reportLambda(ctx, `lambda function at ${path}`, lambdaCode(v));
  }
  if (module !== null && !isKerasModule(module)) {
    const name = className === 'function' ? (str(config ?? null) ?? '') : (className ?? '');
    const cls = classifyGlobal(module, name);
    if (cls.level === 'dangerous') {
      ctx.add('keras.dangerous-module', `${where} refers to ${module}.${name}: ${cls.reason}`);
    } else {
      ctx.add('keras.external-module', `${where} is loaded from module ${module}`);
    }
  }
  // Keras's own non-exported classes serialise with registered_name equal to their class name.
  if (registered !== null && !(module !== null && isKerasModule(module) && registered === className)) {
    ctx.add('keras.custom-object', `${where} is the custom object ${JSON.stringify(registered)}`);
  }
  for (const [k, x] of m) walk(ctx, x, path === '' ? k : `${path}.${k}`);
}

function parse(bytes: Uint8Array, ctx: ScanContext, name: string): JsonValue | undefined {
  const text = decodeUtf8Strict(bytes);
  if (text === null) {
    ctx.add('keras.malformed', `${name} is not UTF-8`);
    return undefined;
  }
  try {
    const { value, duplicates } = parseJson(text);
    if (duplicates.length > 0)
      ctx.add('keras.malformed', `${name} repeats keys: ${duplicates.slice(0, 5).join(', ')}`);
    return value;
  } catch (e) {
    if (!(e instanceof JsonSyntaxError)) throw e;
    ctx.add('keras.malformed', `${name} is not JSON: ${e.message}`);
    return undefined;
  }
}

export function scanKerasConfig(bytes: Uint8Array, ctx: ScanContext): void {
  const v = parse(bytes, ctx, 'config.json');
  if (v !== undefined) walk(ctx, v, '');
}

export function scanKerasMetadata(bytes: Uint8Array, ctx: ScanContext): void {
  const v = parse(bytes, ctx, 'metadata.json');
  if (v !== undefined && !(v instanceof JsonObject && typeof v.map.get('keras_version') === 'string')) {
    ctx.add('keras.malformed', 'metadata.json has no keras_version');
  }
}

import type { ScanContext } from '../context.ts';
import type { ByteSource } from '../source.ts';
import { dangerousLambdaNames } from './keras.ts';

/** Legacy Keras `.h5` models keep their architecture as a JSON string attribute (model_config) near the start. */
const SEARCH_BYTES = 64 * 1024 * 1024;
const CHUNK = 8 * 1024 * 1024;
const LAMBDA = /"class_name":\s*"Lambda"/;
/** Keras 2 stores Lambda code as "function": ["<base64 marshal>", defaults, closure]. */
const FUNCTION_CODE = /"function":\s*\[\s*"([A-Za-z0-9+/=\\n]+)"/g;

/**
 * HDF5 is not parsed (it is a file system of its own); the first 64 MB are searched for a Keras model config
 * with Lambda layers, whose bytecode is checked like in `.keras` archives.
 */
export async function scanHdf5(src: ByteSource, ctx: ScanContext): Promise<void> {
  const end = Math.min(src.size, SEARCH_BYTES);
  // Chunks overlap so that a match straddling a boundary is still seen.
  for (let pos = 0; pos < end; pos += CHUNK - 64 * 1024) {
    const text = Buffer.from(await src.read(pos, Math.min(CHUNK, end - pos))).toString('latin1');
    if (LAMBDA.test(text)) {
      ctx.add('keras.lambda-layer', 'legacy Keras model config has a Lambda layer (marshalled bytecode)');
      for (const m of text.matchAll(FUNCTION_CODE)) {
        const bad = dangerousLambdaNames((m[1] ?? '').replaceAll('\\n', ''));
        if (bad.length > 0) ctx.add('keras.lambda-dangerous-code', `Lambda bytecode uses ${bad.join(', ')}`);
      }
    }
    if (pos + CHUNK >= end) break;
  }
}

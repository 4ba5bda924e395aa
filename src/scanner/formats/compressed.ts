import { gunzipSync, inflateSync, zstdDecompressSync } from 'node:zlib';
import type { ScanContext } from '../context.ts';
import { BufferSource, type ByteSource } from '../source.ts';

/**
 * gzip, zlib and zstd streams (tar.gz, compressed joblib dumps) are inflated with node:zlib under the scan's
 * caps, then scanned as whatever they contain.
 */
export async function scanCompressed(
  src: ByteSource,
  ctx: ScanContext,
  kind: 'gzip' | 'zlib' | 'zstd',
): Promise<void> {
  const limits = ctx.limits;
  const cap = Math.min(limits.maxInflatedEntry, limits.maxInflatedTotal - ctx.state.inflated);
  if (src.size > cap) {
    ctx.add(
      'archive.decompression-limit',
      `${kind} stream of ${src.size} bytes is above the inflation cap; not scanned`,
    );
    return;
  }
  const input = await src.read(0, src.size);
  let out: Buffer;
  try {
    const opts = { maxOutputLength: Math.max(1, cap) };
    out =
      kind === 'gzip'
        ? gunzipSync(input, opts)
        : kind === 'zlib'
          ? inflateSync(input, opts)
          : zstdDecompressSync(input, opts);
  } catch (err) {
    if ((err as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE') {
      ctx.add(
        'archive.decompression-limit',
        `${kind} stream inflates past the cap of ${cap} bytes; not scanned`,
      );
      if (src.size * limits.maxCompressionRatio < cap)
        ctx.add('archive.bomb', `${kind} stream of ${src.size} bytes inflates past ${cap}`);
    } else {
      ctx.add('compression.malformed', `${kind} stream does not inflate: ${(err as Error).message}`);
    }
    return;
  }
  ctx.state.inflated += out.length;
  if (out.length > limits.bombMinSize && out.length / Math.max(1, src.size) > limits.maxCompressionRatio) {
    ctx.add('archive.bomb', `${kind} stream inflated ${src.size} bytes to ${out.length}`);
  }
  await ctx.recurse(new BufferSource(out), `<${kind}>`);
}

import { open } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { checkContext, headerMac, unlockHeader } from './envelope.ts';
import type { EncryptionContext } from './header.ts';
import { encodeHeaderWithoutMac, parseHeader, slotAad } from './header.ts';
import type { KeySlot, ParsedHeader } from './header.ts';
import type { SlotUnwrapper } from './keys.ts';
import { readHeader, writeAtomically } from './files.ts';

/** A key provider that can re-wrap its own slots to its latest key version (the KMS). */
export interface SlotRewrapper extends SlotUnwrapper {
  rewrapSlot(slot: KeySlot, aad: Buffer): Promise<KeySlot>;
}

/**
 * Re-wraps an envelope's data key to the latest key version by rewriting only the header: the slots change and
 * the header MAC is recomputed with the data key (so the header is verified first); the payload is copied byte
 * for byte, never decrypted. The file is replaced atomically, so a crash leaves the old or the new file.
 */
export async function rewrapFile(
  file: string,
  options: { readonly keys: SlotRewrapper; readonly expectedContext?: EncryptionContext },
): Promise<{ before: ParsedHeader; after: ParsedHeader; rewrapped: number }> {
  const handle = await open(file, 'r');
  let before: ParsedHeader;
  let mode: number;
  try {
    const stat = await handle.stat();
    mode = stat.mode & 0o777;
    before = await readHeader(handle, stat.size);
  } finally {
    await handle.close();
  }
  checkContext(before.context, options.expectedContext);
  const dataKey = await unlockHeader(before, { keys: [options.keys] });
  let header: Buffer;
  let rewrapped = 0;
  try {
    const slots: KeySlot[] = [];
    for (const slot of before.slots) {
      if (options.keys.canUnwrap(slot)) {
        slots.push(await options.keys.rewrapSlot(slot, slotAad(slot, before.coreBytes)));
        rewrapped++;
      } else {
        slots.push(slot);
      }
    }
    const body = encodeHeaderWithoutMac(before.coreBytes, slots);
    header = Buffer.concat([body, headerMac(dataKey, body)]);
  } finally {
    dataKey.fill(0);
  }
  await writeAtomically(file, async (sink) => {
    await sink.write(header);
    await copyRange(file, before.headerLength, sink);
    await sink.chmod(mode);
  });
  return { before, after: parseHeader(header), rewrapped };
}

/** Appends `source[from..]` to `sink`, 1 MiB at a time. */
async function copyRange(source: string, from: number, sink: FileHandle): Promise<void> {
  const input = await open(source, 'r');
  try {
    const buffer = Buffer.allocUnsafe(1024 * 1024);
    for (let position = from; ;) {
      const { bytesRead } = await input.read(buffer, 0, buffer.length, position);
      if (bytesRead === 0) return;
      await sink.write(buffer, 0, bytesRead);
      position += bytesRead;
    }
  } finally {
    await input.close();
  }
}

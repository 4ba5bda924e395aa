import { base64, base64Out, plaintextSchema } from '../schemas.ts';
import { tagRoutes } from './tags.ts';

/** Signatures: `POST /v1/kms/sign/:name` and `POST /v1/kms/verify/:name`. */
export const signRoutes = tagRoutes({
  producePath: '/v1/kms/sign/:name',
  produceAction: 'crypto.sign',
  verifyAction: 'crypto.verify',
  verifyPath: '/v1/kms/verify/:name',
  produceSummary: "Sign with the key's latest version (Ed25519, or ECDSA with SHA-256/384, DER)",
  verifySummary: 'Verify a signature (with the latest version unless `version` is given)',
  inputField: 'message',
  tagField: 'signature',
  inputSchema: { ...plaintextSchema, description: 'the message, at most 64 KiB (base64)' },
  tagSchema: base64(1024, 'the signature: Ed25519 (64 bytes) or ECDSA DER'),
  tagOutSchema: base64Out('the signature'),
  produce: async (kms, principal, name, message) => {
    const { signature, keyVersion } = await kms.sign(principal, name, message);
    return { tag: signature, keyVersion };
  },
  produceBatch: async (kms, principal, name, messages) =>
    (
      await kms.signBatch(
        principal,
        name,
        messages.map((message) => ({ message })),
      )
    ).map((r) =>
      r.ok ? { ok: true as const, value: { tag: r.value.signature, keyVersion: r.value.keyVersion } } : r,
    ),
  verify: (kms, principal, name, message, signature, version) =>
    kms.verify(principal, name, message, signature, version),
  verifyBatch: (kms, principal, name, items) =>
    kms.verifyBatch(
      principal,
      name,
      items.map(({ input, tag, version }) => ({
        message: input,
        signature: tag,
        ...(version === undefined ? {} : { version }),
      })),
    ),
});

import { base64, base64Out, plaintextSchema } from '../schemas.ts';
import { tagRoutes } from './tags.ts';

/** HMAC-SHA256: `POST /v1/kms/hmac/:name` and `POST /v1/kms/verify-hmac/:name`. */
export const hmacRoutes = tagRoutes({
  producePath: '/v1/kms/hmac/:name',
  produceAction: 'crypto.hmac',
  verifyAction: 'crypto.verify-hmac',
  verifyPath: '/v1/kms/verify-hmac/:name',
  produceSummary: "HMAC-SHA256 with the key's latest version",
  verifySummary: 'Verify an HMAC-SHA256 tag in constant time (latest version unless `version` is given)',
  inputField: 'data',
  tagField: 'mac',
  inputSchema: { ...plaintextSchema, description: 'the data, at most 64 KiB (base64)' },
  tagSchema: base64(64, 'the HMAC-SHA256 tag'),
  tagOutSchema: base64Out('the HMAC-SHA256 tag'),
  produce: async (kms, principal, name, data) => {
    const { mac, keyVersion } = await kms.hmac(principal, name, data);
    return { tag: mac, keyVersion };
  },
  produceBatch: async (kms, principal, name, inputs) =>
    (
      await kms.hmacBatch(
        principal,
        name,
        inputs.map((data) => ({ data })),
      )
    ).map((r) =>
      r.ok ? { ok: true as const, value: { tag: r.value.mac, keyVersion: r.value.keyVersion } } : r,
    ),
  verify: (kms, principal, name, data, mac, version) => kms.verifyHmac(principal, name, data, mac, version),
  verifyBatch: (kms, principal, name, items) =>
    kms.verifyHmacBatch(
      principal,
      name,
      items.map(({ input, tag, version }) => ({
        data: input,
        mac: tag,
        ...(version === undefined ? {} : { version }),
      })),
    ),
});

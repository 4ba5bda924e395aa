import { fromBase64, principalOf, settleEach, toBase64, wireItems } from '../context.ts';
import type { RouteModule } from '../context.ts';
import {
  base64,
  base64Out,
  errorResponses,
  nameParams,
  object,
  plaintextSchema,
  singleOrBatch,
  singleOrBatchResponse,
  versionNumberSchema,
} from '../schemas.ts';

/** HMAC-SHA256: `POST /v1/kms/hmac/:name` and `POST /v1/kms/verify-hmac/:name`. */

const dataSchema = { ...plaintextSchema, description: 'the data, at most 64 KiB (base64)' };
const macSchema = base64(64, 'the HMAC-SHA256 tag');

interface VerifyHmacItem {
  data: string;
  mac: string;
  version?: number;
}

export const hmacRoutes: RouteModule = (app, { kms, batchBodyLimit }) => {
  app.post<{ Params: { name: string }; Body: { data: string } | { items: { data: string }[] } }>(
    '/v1/kms/hmac/:name',
    {
      bodyLimit: batchBodyLimit,
      schema: {
        tags: ['crypto'],
        summary: "HMAC-SHA256 with the key's latest version",
        params: nameParams,
        body: singleOrBatch(object({ data: dataSchema }, ['data'])),
        response: {
          200: singleOrBatchResponse(
            { mac: base64Out('the HMAC-SHA256 tag'), keyVersion: { type: 'integer' } },
            ['mac', 'keyVersion'],
          ),
          ...errorResponses,
        },
      },
    },
    async (request) => {
      const principal = principalOf(request);
      const { name } = request.params;
      const body = request.body;
      const view = (r: { mac: Buffer; keyVersion: number }) => ({
        mac: toBase64(r.mac),
        keyVersion: r.keyVersion,
      });
      if ('items' in body) {
        const results = await kms.hmacBatch(
          principal,
          name,
          body.items.map((item) => ({ data: fromBase64(item.data) })),
        );
        return { items: wireItems(results, view) };
      }
      return view(await kms.hmac(principal, name, fromBase64(body.data)));
    },
  );

  app.post<{ Params: { name: string }; Body: VerifyHmacItem | { items: VerifyHmacItem[] } }>(
    '/v1/kms/verify-hmac/:name',
    {
      bodyLimit: batchBodyLimit,
      schema: {
        tags: ['crypto'],
        summary: 'Verify an HMAC-SHA256 tag in constant time (latest version unless `version` is given)',
        params: nameParams,
        body: singleOrBatch(
          object({ data: dataSchema, mac: macSchema, version: versionNumberSchema }, ['data', 'mac']),
        ),
        response: {
          200: singleOrBatchResponse({ valid: { type: 'boolean' } }, ['valid']),
          ...errorResponses,
        },
      },
    },
    async (request) => {
      const principal = principalOf(request);
      const { name } = request.params;
      const body = request.body;
      const verify = (item: VerifyHmacItem) =>
        kms.verifyHmac(principal, name, fromBase64(item.data), fromBase64(item.mac), item.version);
      if ('items' in body) {
        return { items: wireItems(await settleEach(body.items, verify), (valid) => ({ valid })) };
      }
      return { valid: await verify(body) };
    },
  );
};

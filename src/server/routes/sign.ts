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

/** Signatures: `POST /v1/kms/sign/:name` and `POST /v1/kms/verify/:name`. */

const messageSchema = { ...plaintextSchema, description: 'the message, at most 64 KiB (base64)' };
const signatureSchema = base64(1024, 'the signature: Ed25519 (64 bytes) or ECDSA DER');

interface VerifyItem {
  message: string;
  signature: string;
  version?: number;
}

export const signRoutes: RouteModule = (app, { kms, batchBodyLimit }) => {
  app.post<{ Params: { name: string }; Body: { message: string } | { items: { message: string }[] } }>(
    '/v1/kms/sign/:name',
    {
      bodyLimit: batchBodyLimit,
      schema: {
        tags: ['crypto'],
        summary: "Sign with the key's latest version (Ed25519, or ECDSA with SHA-256/384, DER)",
        params: nameParams,
        body: singleOrBatch(object({ message: messageSchema }, ['message'])),
        response: {
          200: singleOrBatchResponse(
            { signature: base64Out('the signature'), keyVersion: { type: 'integer' } },
            ['signature', 'keyVersion'],
          ),
          ...errorResponses,
        },
      },
    },
    async (request) => {
      const principal = principalOf(request);
      const { name } = request.params;
      const body = request.body;
      const view = (r: { signature: Buffer; keyVersion: number }) => ({
        signature: toBase64(r.signature),
        keyVersion: r.keyVersion,
      });
      if ('items' in body) {
        const results = await kms.signBatch(
          principal,
          name,
          body.items.map((item) => ({ message: fromBase64(item.message) })),
        );
        return { items: wireItems(results, view) };
      }
      return view(await kms.sign(principal, name, fromBase64(body.message)));
    },
  );

  app.post<{ Params: { name: string }; Body: VerifyItem | { items: VerifyItem[] } }>(
    '/v1/kms/verify/:name',
    {
      bodyLimit: batchBodyLimit,
      schema: {
        tags: ['crypto'],
        summary: 'Verify a signature (with the latest version unless `version` is given)',
        params: nameParams,
        body: singleOrBatch(
          object({ message: messageSchema, signature: signatureSchema, version: versionNumberSchema }, [
            'message',
            'signature',
          ]),
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
      const verify = (item: VerifyItem) =>
        kms.verify(principal, name, fromBase64(item.message), fromBase64(item.signature), item.version);
      if ('items' in body) {
        return { items: wireItems(await settleEach(body.items, verify), (valid) => ({ valid })) };
      }
      return { valid: await verify(body) };
    },
  );
};

import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { CertificateAuthority, CertificateRecord, RevocationReason } from '../../identity/index.ts';
import { REVOCATION_REASONS, toPem } from '../../identity/index.ts';
import type { AuthzResource } from '../../policy/index.ts';
import { emptyBodyAsObject, principalOf } from '../context.ts';
import { errorResponses, object } from '../schemas.ts';
import type { JsonSchema } from '../schemas.ts';

/**
 * Warden's internal CA over HTTP (`/v1/ca/...`, docs/ca.md): the trust bundle and the CRL are public (what every
 * TLS peer needs before it can authenticate anyone); issuing, revoking and reading the inventory are Cedar
 * actions on `Identity` resources.
 */
export interface CaRouteDeps {
  readonly ca: CertificateAuthority;
}

const tags = ['ca'];
const PEM_MAX = 32 * 1024;
const SERIAL_PATTERN = '^[0-9A-Fa-f:]{1,64}$';
const dateSchema: JsonSchema = { type: 'string', description: 'RFC 3339' };

const caCertificateView = object(
  {
    serial: { type: 'string' },
    subject: { type: 'string' },
    keyVersion: { type: 'integer' },
    notBefore: dateSchema,
    notAfter: dateSchema,
    certificate: { type: 'string', description: 'PEM' },
  },
  ['serial', 'subject', 'keyVersion', 'notBefore', 'notAfter', 'certificate'],
);

const recordView = object(
  {
    serial: { type: 'string' },
    profile: { type: 'string', enum: ['ca', 'server', 'client'] },
    subject: { type: 'string' },
    identity: { type: 'string' },
    issuerSerial: { type: ['string', 'null'] },
    keyVersion: { type: 'integer' },
    notBefore: dateSchema,
    notAfter: dateSchema,
    issuedAt: dateSchema,
    issuedBy: { type: 'string' },
    revokedAt: { type: ['string', 'null'] },
    revocationReason: { type: ['string', 'null'] },
    certificate: { type: 'string', description: 'PEM' },
  },
  [
    'serial',
    'profile',
    'subject',
    'identity',
    'issuerSerial',
    'keyVersion',
    'notBefore',
    'notAfter',
    'issuedAt',
    'issuedBy',
    'revokedAt',
    'revocationReason',
    'certificate',
  ],
);

interface IssueBody {
  profile: 'server' | 'client';
  csr?: string;
  publicKey?: string;
  dnsNames?: string[];
  ipAddresses?: string[];
  identity?: string;
  lifetimeSeconds?: number;
}

const pemString = (description: string): JsonSchema => ({
  type: 'string',
  minLength: 1,
  maxLength: PEM_MAX,
  description,
});

function recordOut(record: CertificateRecord): Record<string, unknown> {
  const iso = (ms: number | null): string | null => (ms === null ? null : new Date(ms).toISOString());
  return {
    serial: record.serial,
    profile: record.profile,
    subject: record.subject,
    identity: record.identity,
    issuerSerial: record.issuerSerial,
    keyVersion: record.keyVersion,
    notBefore: iso(record.notBefore),
    notAfter: iso(record.notAfter),
    issuedAt: iso(record.issuedAt),
    issuedBy: record.issuedBy,
    revokedAt: iso(record.revokedAt),
    revocationReason: record.revocationReason,
    certificate: toPem(record.der, 'CERTIFICATE'),
  };
}

/**
 * The `Identity` a certificate request names: the client's principal id (`service:gateway`), or `server:` and
 * the requested names as given (`server:dns:a.internal,ip:10.0.0.1`), so policies can scope who may ask for what.
 */
function issueResource(request: FastifyRequest): AuthzResource {
  const body = request.body as IssueBody;
  if (body.profile === 'client') return { type: 'Identity', id: body.identity ?? '' };
  const names = [
    ...(body.dnsNames ?? []).map((n) => `dns:${n}`),
    ...(body.ipAddresses ?? []).map((a) => `ip:${a}`),
  ];
  return { type: 'Identity', id: `server:${names.join(',')}` };
}

const CA_INVENTORY = (): AuthzResource => ({ type: 'Identity', id: 'ca:certificates' });
const CA_ITSELF = (): AuthzResource => ({ type: 'Identity', id: 'ca' });

export function caRoutes(app: FastifyInstance, deps: CaRouteDeps): void {
  const { ca } = deps;

  app.get(
    '/v1/ca/certificates',
    {
      config: { public: true },
      schema: {
        tags,
        summary: 'The trust bundle: every CA certificate not yet expired, newest first (public)',
        security: [],
        response: {
          200: object(
            {
              certificates: { type: 'array', items: caCertificateView },
              pem: { type: 'string', description: 'all of them as one PEM bundle' },
            },
            ['certificates', 'pem'],
          ),
          ...errorResponses,
        },
      },
    },
    async () => {
      const bundle = await ca.trustBundle();
      return {
        pem: bundle.pem,
        certificates: bundle.certificates.map((c) => ({
          ...c,
          notBefore: c.notBefore.toISOString(),
          notAfter: c.notAfter.toISOString(),
        })),
      };
    },
  );

  app.get(
    '/v1/ca/crl',
    {
      config: { public: true },
      schema: {
        tags,
        summary:
          'The current CRL: DER (application/pkix-crl) by default, `?format=pem` for PEM, `?format=json` for PEM with its dates (public)',
        security: [],
        querystring: object({ format: { type: 'string', enum: ['der', 'pem', 'json'] } }),
        response: {
          200: {
            description: 'DER, PEM text, or JSON',
            anyOf: [
              { type: 'string' },
              object(
                {
                  crl: { type: 'string', description: 'PEM' },
                  thisUpdate: dateSchema,
                  nextUpdate: dateSchema,
                  entries: { type: 'integer' },
                },
                ['crl', 'thisUpdate', 'nextUpdate', 'entries'],
              ),
            ],
          },
          ...errorResponses,
        },
      },
    },
    async (request: FastifyRequest<{ Querystring: { format?: 'der' | 'pem' | 'json' } }>, reply) => {
      const crl = await ca.crl();
      // Caches may keep it for a tenth of its remaining validity, as the CA itself does.
      const maxAge = Math.max(0, Math.floor((crl.nextUpdate.getTime() - Date.now()) / 10_000));
      reply.header('cache-control', `public, max-age=${maxAge}`);
      const format = request.query.format ?? 'der';
      if (format === 'json') {
        return {
          crl: crl.pem,
          thisUpdate: crl.thisUpdate.toISOString(),
          nextUpdate: crl.nextUpdate.toISOString(),
          entries: crl.entries,
        };
      }
      if (format === 'pem') return reply.type('application/x-pem-file').send(crl.pem);
      return reply.type('application/pkix-crl').send(crl.der);
    },
  );

  const caInfoView = caCertificateView;
  const caInfoOut = (info: Awaited<ReturnType<CertificateAuthority['current']>>) => ({
    ...info,
    notBefore: info.notBefore.toISOString(),
    notAfter: info.notAfter.toISOString(),
  });

  app.post(
    '/v1/ca/init',
    {
      config: { action: 'identity.manage', resource: CA_ITSELF },
      schema: {
        tags,
        summary:
          'Create the CA: its KMS key (if missing; the caller needs kms keys.create) and the CA certificate. Idempotent',
        body: object({ keyType: { type: 'string', enum: ['ecdsa-p256', 'ecdsa-p384'] } }),
        response: { 200: caInfoView, ...errorResponses },
      },
      preValidation: emptyBodyAsObject,
    },
    async (request: FastifyRequest<{ Body: { keyType?: 'ecdsa-p256' | 'ecdsa-p384' } }>) =>
      caInfoOut(await ca.init(principalOf(request), request.body.keyType)),
  );

  app.post(
    '/v1/ca/rotate',
    {
      config: { action: 'identity.manage', resource: CA_ITSELF },
      schema: {
        tags,
        summary:
          'Rotate the CA key (a new KMS key version; the caller needs kms keys.rotate) and issue its CA certificate',
        response: { 200: caInfoView, ...errorResponses },
      },
    },
    async (request) => caInfoOut(await ca.rotate(principalOf(request))),
  );

  app.post(
    '/v1/ca/issue',
    {
      config: { action: 'ca.issue', resource: issueResource },
      schema: {
        tags,
        summary:
          'Issue a short-lived server or client certificate for a CSR (or bare public key); names come from the request and policy, never from the CSR',
        body: object(
          {
            profile: { type: 'string', enum: ['server', 'client'] },
            csr: pemString('PKCS#10 request, PEM (its signature must verify; only its public key is used)'),
            publicKey: pemString('SPKI public key, PEM (instead of a CSR)'),
            dnsNames: {
              type: 'array',
              maxItems: 32,
              items: { type: 'string', minLength: 1, maxLength: 253 },
            },
            ipAddresses: {
              type: 'array',
              maxItems: 16,
              items: { type: 'string', minLength: 2, maxLength: 45 },
            },
            identity: {
              type: 'string',
              minLength: 3,
              maxLength: 140,
              description: 'client principal id: service:<name> or user:<name>',
            },
            lifetimeSeconds: { type: 'integer', minimum: 300, maximum: 7 * 24 * 3600 },
          },
          ['profile'],
        ),
        response: {
          200: object(
            {
              serial: { type: 'string' },
              profile: { type: 'string' },
              identity: { type: 'string' },
              notBefore: dateSchema,
              notAfter: dateSchema,
              certificate: { type: 'string', description: 'the leaf, PEM' },
              chain: { type: 'string', description: 'leaf then issuing CA, PEM' },
              caCertificate: { type: 'string', description: 'PEM' },
            },
            [
              'serial',
              'profile',
              'identity',
              'notBefore',
              'notAfter',
              'certificate',
              'chain',
              'caCertificate',
            ],
          ),
          ...errorResponses,
        },
      },
    },
    async (request: FastifyRequest<{ Body: IssueBody }>) => {
      const body = request.body;
      const lifetimeMs = body.lifetimeSeconds === undefined ? undefined : body.lifetimeSeconds * 1000;
      const source =
        body.csr !== undefined
          ? { csr: body.csr, ...(body.publicKey === undefined ? {} : { publicKey: body.publicKey }) }
          : { publicKey: body.publicKey ?? '' };
      const issued = await ca.issue(
        principalOf(request),
        (body.profile === 'server'
          ? {
              profile: 'server',
              ...source,
              ...(body.dnsNames === undefined ? {} : { dnsNames: body.dnsNames }),
              ...(body.ipAddresses === undefined ? {} : { ipAddresses: body.ipAddresses }),
              ...(lifetimeMs === undefined ? {} : { lifetimeMs }),
            }
          : {
              profile: 'client',
              ...source,
              identity: body.identity ?? '',
              ...(lifetimeMs === undefined ? {} : { lifetimeMs }),
            }) as Parameters<CertificateAuthority['issue']>[1],
      );
      return {
        ...issued,
        notBefore: issued.notBefore.toISOString(),
        notAfter: issued.notAfter.toISOString(),
      };
    },
  );

  app.post(
    '/v1/ca/revoke',
    {
      config: {
        action: 'ca.revoke',
        resource: (request) => ({
          type: 'Identity',
          id: `certificate:${(request.body as { serial: string }).serial.toLowerCase()}`,
        }),
      },
      schema: {
        tags,
        summary: 'Revoke an issued certificate (it appears on the next CRL)',
        body: object(
          {
            serial: { type: 'string', pattern: SERIAL_PATTERN },
            reason: { type: 'string', enum: [...REVOCATION_REASONS] },
          },
          ['serial'],
        ),
        response: { 200: recordView, ...errorResponses },
      },
    },
    async (request: FastifyRequest<{ Body: { serial: string; reason?: RevocationReason } }>) =>
      recordOut(await ca.revoke(principalOf(request), request.body.serial, request.body.reason)),
  );

  app.get(
    '/v1/ca/issued',
    {
      config: { action: 'ca.read', resource: CA_INVENTORY },
      schema: {
        tags,
        summary: 'The certificate inventory, newest first (unexpired only unless includeExpired=true)',
        querystring: object({
          profile: { type: 'string', enum: ['ca', 'server', 'client'] },
          includeExpired: { type: 'string', enum: ['true', 'false'] },
          limit: { type: 'string', pattern: '^[1-9][0-9]{0,3}$' },
        }),
        response: {
          200: object({ certificates: { type: 'array', items: recordView } }, ['certificates']),
          ...errorResponses,
        },
      },
    },
    async (
      request: FastifyRequest<{
        Querystring: { profile?: 'ca' | 'server' | 'client'; includeExpired?: string; limit?: string };
      }>,
    ) => {
      const q = request.query;
      const records = await ca.list({
        ...(q.profile === undefined ? {} : { profile: q.profile }),
        includeExpired: q.includeExpired === 'true',
        ...(q.limit === undefined ? {} : { limit: Number(q.limit) }),
      });
      return { certificates: records.map(recordOut) };
    },
  );

  app.get(
    '/v1/ca/issued/:serial',
    {
      config: {
        action: 'ca.read',
        resource: (request) => ({
          type: 'Identity',
          id: `certificate:${(request.params as { serial: string }).serial.toLowerCase()}`,
        }),
      },
      schema: {
        tags,
        summary: 'One issued certificate and its revocation state',
        params: object({ serial: { type: 'string', pattern: SERIAL_PATTERN } }, ['serial']),
        response: { 200: recordView, ...errorResponses },
      },
    },
    async (request: FastifyRequest<{ Params: { serial: string } }>) =>
      recordOut(await ca.get(request.params.serial)),
  );
}

import { fetch } from 'undici';
import type { Dispatcher } from 'undici';
import { OidcError } from './errors.ts';

/** Provider responses larger than this are refused (discovery, token and UserInfo responses are small). */
export const MAX_PROVIDER_RESPONSE_BYTES = 256 * 1024;

export interface ProviderResponse {
  readonly status: number;
  readonly contentType: string;
  /** The parsed JSON body, or undefined when it was not JSON. */
  readonly json: unknown;
}

/**
 * One request to the identity provider: no redirects followed (a redirect from a token endpoint is a
 * misconfiguration or an attack), a timeout, and a bounded body. Transport failures are
 * `oidc_provider_unavailable`; the caller judges statuses and contents.
 */
export async function providerRequest(
  url: string,
  init: { method: 'GET' | 'POST'; headers: Record<string, string>; body?: string },
  options: { timeoutMs: number; dispatcher: Dispatcher | undefined },
): Promise<ProviderResponse> {
  let response;
  try {
    response = await fetch(url, {
      method: init.method,
      headers: init.headers,
      ...(init.body === undefined ? {} : { body: init.body }),
      redirect: 'manual',
      signal: AbortSignal.timeout(options.timeoutMs),
      ...(options.dispatcher === undefined ? {} : { dispatcher: options.dispatcher }),
    });
  } catch (err) {
    throw new OidcError('oidc_provider_unavailable', 'request to the provider failed', { cause: err });
  }
  const chunks: Uint8Array[] = [];
  let size = 0;
  try {
    if (response.body !== null) {
      for await (const chunk of response.body as AsyncIterable<Uint8Array>) {
        size += chunk.byteLength;
        if (size > MAX_PROVIDER_RESPONSE_BYTES) {
          await response.body.cancel();
          throw new OidcError('oidc_provider_unavailable', 'provider response too large');
        }
        chunks.push(chunk);
      }
    }
  } catch (err) {
    if (err instanceof OidcError) throw err;
    throw new OidcError('oidc_provider_unavailable', 'reading the provider response failed', { cause: err });
  }
  const contentType = (response.headers.get('content-type') ?? '').split(';')[0]?.trim().toLowerCase() ?? '';
  let json: unknown;
  if (contentType === 'application/json' || contentType.endsWith('+json')) {
    try {
      json = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    } catch {
      json = undefined;
    }
  }
  return { status: response.status, contentType, json };
}

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

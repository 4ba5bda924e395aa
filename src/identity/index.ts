/**
 * Identity domain. So far: credential primitives (see docs/identity-credentials.md). Pure building blocks: they
 * hash, verify and decide; persistence, sessions and HTTP belong to the identity service that uses them.
 */
export * from './credentials/index.ts';
export * from './ca/index.ts';
export * from './errors.ts';
export * from './schema.ts';
export * from './secrets.ts';
export * from './directory.ts';
export * from './tokens.ts';
export * from './oauth.ts';
export * from './service.ts';
export * from './oidc/index.ts';
export * from './webauthn/index.ts';
export * from './step-up.ts';

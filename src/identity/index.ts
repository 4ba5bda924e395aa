/**
 * Identity domain. So far: credential primitives (see docs/identity-credentials.md). Pure building blocks: they
 * hash, verify and decide; persistence, sessions and HTTP belong to the identity service that uses them.
 */
export * from './credentials/index.ts';

export { ConfigError, defaultDataDir, loadConfig } from './config.ts';
export type { RootMode, WardenConfig } from './config.ts';
export { ensureDevTls } from './dev-tls.ts';
export { startWarden } from './warden.ts';
export type { RunningWarden, StartOptions } from './warden.ts';

export * from './passwords.ts';
export * from './totp.ts';
export * from './recovery.ts';
export * from './api-keys.ts';
export * from './throttle.ts';

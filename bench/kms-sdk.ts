/**
 * SDK load generator of the KMS HTTP benchmark: `KmsClient` (undici pool, one connection per caller, the CA
 * verified) driven by BENCH_CONNECTIONS async loops encrypting 256 bytes, in a process of its own. Environment:
 * BENCH_URL, BENCH_TOKEN, BENCH_CA, BENCH_CONNECTIONS, BENCH_SECONDS, BENCH_WARMUP_SECONDS. Prints one JSON line.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { KmsClient } from '../src/client/index.ts';
import { closedLoop, envNumber } from './kms-measure.ts';

const connections = envNumber('BENCH_CONNECTIONS', 1);
const client = new KmsClient({
  address: process.env.BENCH_URL ?? '',
  token: process.env.BENCH_TOKEN ?? '',
  ca: readFileSync(process.env.BENCH_CA ?? ''),
  connections,
});
const plaintext = randomBytes(256);
const op = () => client.encrypt('bench', plaintext);
const warmup = envNumber('BENCH_WARMUP_SECONDS', 0);
if (warmup > 0) await closedLoop(op, connections, warmup);
const { cpuUsPerOp: _clientCpu, ...sample } = await closedLoop(
  op,
  connections,
  envNumber('BENCH_SECONDS', 2),
);
await client.close();
process.stdout.write(`${JSON.stringify(sample)}\n`);

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import fc from 'fast-check';
import { ConfigError, loadConfig } from '../../src/app/index.ts';
import { unknownSetting } from '../../src/settings/index.ts';
import { tempDir } from '../envelope/support.ts';

const KNOWN = { '': ['listen', 'tls', 'audit'], tls: ['certFile', 'keyFile'], audit: ['file'] } as const;

describe('unknownSetting', () => {
  it('names the first unknown setting with its section, and a section that is not an object', () => {
    assert.equal(unknownSetting({ listen: 'x', tls: { certFile: 'c' } }, KNOWN), undefined);
    assert.equal(unknownSetting({}, KNOWN), undefined);
    assert.equal(
      unknownSetting({ lisen: 'x' }, KNOWN),
      'unknown setting lisen (known in this section: listen, tls, audit)',
    );
    assert.equal(
      unknownSetting({ tls: { certFil: 'c' } }, KNOWN),
      'unknown setting tls.certFil (known in this section: certFile, keyFile)',
    );
    assert.equal(unknownSetting({ audit: 'on' }, KNOWN), 'audit must be an object');
    assert.equal(unknownSetting({ audit: null }, KNOWN), 'audit must be an object');
    assert.equal(unknownSetting({ tls: [] }, KNOWN), 'tls must be an object');
  });

  it('checks a section inside a section', () => {
    const nested = { '': ['policies'], policies: ['guardrails'], 'policies.guardrails': ['corporateCidrs'] };
    assert.equal(unknownSetting({ policies: { guardrails: { corporateCidrs: [] } } }, nested), undefined);
    assert.equal(unknownSetting({ policies: {} }, nested), undefined);
    assert.equal(
      unknownSetting({ policies: { guardrails: { corporateCidr: [] } } }, nested),
      'unknown setting policies.guardrails.corporateCidr (known in this section: corporateCidrs)',
    );
    assert.equal(unknownSetting({ policies: 'x' }, nested), 'policies must be an object');
  });

  it('accepts exactly the objects made of known settings (property)', () => {
    // Names only: sections (`tls`, `audit`) get object values of their own below; `__proto__` is not data.
    const name = fc
      .string({ minLength: 1, maxLength: 12 })
      .filter((n) => n !== 'tls' && n !== 'audit' && n !== '__proto__');
    fc.assert(
      fc.property(fc.dictionary(name, fc.constant(1)), fc.dictionary(name, fc.constant(1)), (top, tls) => {
        const raw = { ...top, tls };
        const strays = [
          ...Object.keys(raw).filter((k) => !(KNOWN[''] as readonly string[]).includes(k)),
          ...Object.keys(tls).filter((k) => !(KNOWN.tls as readonly string[]).includes(k)),
        ];
        const found = unknownSetting(raw, KNOWN);
        assert.equal(found === undefined, strays.length === 0, String(found));
        if (found !== undefined)
          assert.ok(strays.some((s) => found.includes(` ${s} `) || found.includes(`.${s} `)));
      }),
    );
  });
});

describe('warden server configuration file', () => {
  it('refuses a misspelt setting instead of quietly keeping its default', () => {
    const dir = tempDir('warden-settings-');
    const write = (content: unknown) => {
      const file = path.join(dir, `config-${Math.random().toString(36).slice(2)}.json`);
      writeFileSync(file, JSON.stringify(content));
      return file;
    };
    const env = (file: string) => ({ WARDEN_CONFIG: file, WARDEN_DATA_DIR: dir });
    // `databaseURL` would leave the server on its embedded SQLite while the operator thinks it uses PostgreSQL.
    assert.throws(
      () => loadConfig(env(write({ databaseURL: 'postgres://db/warden' }))),
      (e: unknown) =>
        e instanceof ConfigError &&
        /unknown setting databaseURL \(known in this section: dataDir/.test(e.message),
    );
    assert.throws(
      () => loadConfig(env(write({ audit: { retentionDay: 30 } }))),
      (e: unknown) => e instanceof ConfigError && /unknown setting audit\.retentionDay /.test(e.message),
    );
    // A misspelt guardrail would leave it off.
    assert.throws(
      () => loadConfig(env(write({ policies: { guardrails: { corporateCidr: ['10.0.0.0/8'] } } }))),
      (e: unknown) =>
        e instanceof ConfigError && /unknown setting policies\.guardrails\.corporateCidr /.test(e.message),
    );
    // A guardrail setting of the wrong type, or an unknown time zone: refused as configuration (exit 2).
    assert.throws(
      () => loadConfig(env(write({ policies: { guardrails: { reauthenticateOnNewNetwork: 'true' } } }))),
      (e: unknown) =>
        e instanceof ConfigError && /^policies\.guardrails: .*reauthenticateOnNewNetwork/.test(e.message),
    );
    assert.throws(
      () => loadConfig(env(write({ policies: { timeZone: 'Mars/Olympus' } }))),
      (e: unknown) =>
        e instanceof ConfigError && /^policies\.timeZone: unknown time zone "Mars\/Olympus"/.test(e.message),
    );
    // Audit sinks: a known type, and only that type's settings.
    assert.throws(
      () => loadConfig(env(write({ audit: { sinks: [{ type: 'file', path: 'a.jsonl', maxByte: 10 }] } }))),
      (e: unknown) =>
        e instanceof ConfigError && /^audit\.sinks\[0\]: unknown setting maxByte /.test(e.message),
    );
    assert.throws(
      () => loadConfig(env(write({ audit: { sinks: [{ type: 'kafka' }] } }))),
      (e: unknown) =>
        e instanceof ConfigError && /audit\.sinks\[0\]\.type must be file, syslog, webhook/.test(e.message),
    );
    assert.throws(
      () => loadConfig(env(write({ audit: { sinks: { type: 'file' } } }))),
      (e: unknown) => e instanceof ConfigError && /audit\.sinks must be an array/.test(e.message),
    );
    assert.throws(
      () => loadConfig(env(write(['not', 'an', 'object']))),
      (e: unknown) => e instanceof ConfigError && /must hold a JSON object/.test(e.message),
    );
    assert.equal(loadConfig(env(write({ audit: { retentionDays: 30 } }))).audit.retentionDays, 30);
  });
});

describe('warden server and warden gateway with a misspelt setting', () => {
  it('stop with exit 2 and name the setting', () => {
    const dir = tempDir('warden-settings-cli-');
    const main = path.resolve(import.meta.dirname, '..', '..', 'src', 'cli', 'main.ts');
    const serverConfig = path.join(dir, 'server.json');
    writeFileSync(serverConfig, JSON.stringify({ databaseURL: 'postgres://db/warden' }));
    const gatewayConfig = path.join(dir, 'gateway.json');
    writeFileSync(gatewayConfig, JSON.stringify({ insecureHttp: true, outputPolcy: {} }));
    for (const [args, env, setting] of [
      [['server'], { WARDEN_CONFIG: serverConfig, WARDEN_DATA_DIR: dir }, 'databaseURL'],
      [['gateway', '--config', gatewayConfig], {}, 'outputPolcy'],
    ] as const) {
      const run = spawnSync(process.execPath, [main, ...args], {
        env: { ...process.env, ...env },
        encoding: 'utf8',
        timeout: 30_000, // a server that accepted the file would otherwise run on
      });
      assert.equal(run.status, 2, run.stderr);
      assert.match(run.stderr, new RegExp(`unknown setting ${setting} `));
    }
  });
});

/**
 * known_hosts checking of the slurm platform (src/platforms/slurm/knownhosts.ts), against files and
 * fingerprints produced by the real OpenSSH tools (ssh-keygen), including hashed (`ssh-keygen -H`) entries.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fingerprint, keyTypeOf, knownKeyTypes, loadKnownHosts, parseKnownHosts, verifyHostKey } from '../../src/platforms/slurm/knownhosts.js';

let dir: string;
const keys: Record<string, { line: string; blob: Buffer; file: string }> = {};

function keygen(name: string, type: 'ed25519' | 'ecdsa' | 'rsa') {
  const file = join(dir, name);
  execFileSync('ssh-keygen', ['-q', '-t', type, ...(type === 'rsa' ? ['-b', '2048'] : []), '-N', '', '-f', file]);
  const pub = readFileSync(`${file}.pub`, 'utf8').trim().split(' ');
  keys[name] = { line: `${pub[0]} ${pub[1]}`, blob: Buffer.from(pub[1]!, 'base64'), file };
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'tao-infer-kh-'));
  keygen('a', 'ed25519');
  keygen('b', 'ed25519');
  keygen('c', 'ecdsa');
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('verifyHostKey', () => {
  it('matches a plain entry on port 22 and the [host]:port form on other ports, not across them', () => {
    const lines = parseKnownHosts(`login.example.com ${keys.a!.line}\n[login.example.com]:2222 ${keys.b!.line}\n`);
    expect(verifyHostKey(lines, 'login.example.com', 22, keys.a!.blob).status).toBe('match');
    expect(verifyHostKey(lines, 'login.example.com', 2222, keys.b!.blob).status).toBe('match');
    // the port-22 key does not vouch for port 2222 and vice versa: the other key is "changed"
    expect(verifyHostKey(lines, 'login.example.com', 2222, keys.a!.blob).status).toBe('changed');
    expect(verifyHostKey(lines, 'login.example.com', 22, keys.b!.blob).status).toBe('changed');
    expect(verifyHostKey(lines, 'other.example.com', 22, keys.a!.blob).status).toBe('unknown');
  });

  it('supports hashed entries written by ssh-keygen -H', () => {
    const f = join(dir, 'hashed_known_hosts');
    writeFileSync(f, `[10.1.2.3]:2200 ${keys.a!.line}\ndgx-login ${keys.c!.line}\n`);
    execFileSync('ssh-keygen', ['-q', '-H', '-f', f], { stdio: 'ignore' });
    const text = readFileSync(f, 'utf8');
    expect(text).not.toContain('dgx-login');
    expect(text).toContain('|1|');
    const lines = loadKnownHosts([f, join(dir, 'missing-file')]);
    expect(verifyHostKey(lines, '10.1.2.3', 2200, keys.a!.blob)).toMatchObject({ status: 'match', file: f, line: 1 });
    expect(verifyHostKey(lines, 'dgx-login', 22, keys.c!.blob).status).toBe('match');
    expect(verifyHostKey(lines, '10.1.2.3', 22, keys.a!.blob).status).toBe('unknown');
    expect(verifyHostKey(lines, 'dgx-login', 22, keys.b!.blob).status).toBe('changed');
  });

  it('handles comma lists, wildcards, negation, comments and @revoked', () => {
    const lines = parseKnownHosts(
      [
        '# comment',
        '',
        `*.cluster.org,!evil.cluster.org,10.0.0.? ${keys.a!.line} admins`,
        `@revoked * ${keys.b!.line}`,
        `@cert-authority *.cluster.org ${keys.c!.line}`,
        'garbage line',
      ].join('\n'),
    );
    expect(verifyHostKey(lines, 'login1.cluster.org', 22, keys.a!.blob).status).toBe('match');
    expect(verifyHostKey(lines, 'LOGIN1.CLUSTER.ORG', 22, keys.a!.blob).status).toBe('match');
    expect(verifyHostKey(lines, '10.0.0.7', 22, keys.a!.blob).status).toBe('match');
    expect(verifyHostKey(lines, '10.0.0.17', 22, keys.a!.blob).status).toBe('unknown');
    expect(verifyHostKey(lines, 'evil.cluster.org', 22, keys.a!.blob).status).toBe('unknown');
    expect(verifyHostKey(lines, 'login1.cluster.org', 22, keys.b!.blob).status).toBe('revoked');
    // a cert-authority line is not a host key
    expect(verifyHostKey(lines, 'x.cluster.org', 22, keys.c!.blob).status).toBe('changed');
  });

  it('lists known key types so those algorithms are preferred', () => {
    const lines = parseKnownHosts(`h ${keys.c!.line}\nh ${keys.a!.line}\n[h]:2 ${keys.b!.line}\n`);
    expect(knownKeyTypes(lines, 'h', 22)).toEqual(['ecdsa-sha2-nistp256', 'ssh-ed25519']);
    expect(knownKeyTypes(lines, 'h', 2)).toEqual(['ssh-ed25519']);
  });
});

describe('fingerprint / keyTypeOf', () => {
  it('prints the same SHA256 fingerprint as ssh-keygen -lf', () => {
    for (const k of Object.values(keys)) {
      const out = execFileSync('ssh-keygen', ['-l', '-E', 'sha256', '-f', `${k.file}.pub`], { encoding: 'utf8' });
      expect(out.split(' ')[1]).toBe(fingerprint(k.blob));
    }
    expect(keyTypeOf(keys.a!.blob)).toBe('ssh-ed25519');
    expect(keyTypeOf(keys.c!.blob)).toBe('ecdsa-sha2-nistp256');
    expect(keyTypeOf(Buffer.from([0, 0]))).toBe('unknown');
  });
});

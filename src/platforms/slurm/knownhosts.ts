/**
 * OpenSSH `known_hosts` checking for the slurm platform (no library in the dependency set does it).
 *
 * Supported line syntax (sshd(8) "SSH_KNOWN_HOSTS FILE FORMAT"):
 *   `[@revoked|@cert-authority] patterns keytype base64-key [comment]`
 * - patterns: comma-separated host names/addresses with `*` and `?` wildcards and `!` negation;
 *   a non-22 port is written `[host]:port`;
 * - hashed entries `|1|<base64 salt>|<base64 HMAC-SHA1(salt, name)>` (HashKnownHosts yes);
 * - `@revoked` lines refuse that key; `@cert-authority` lines are ignored (no certificate support).
 */
import { createHash, createHmac } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { FILE_LIMITS, checkRegularFileSync } from '../../util/input-file.js';

export interface KnownHostLine {
  file: string;
  line: number;
  marker?: '@revoked' | '@cert-authority';
  patterns: string;
  keyType: string;
  key: Buffer;
}

export type HostKeyVerdict =
  | { status: 'match'; file: string; line: number }
  | { status: 'revoked'; file: string; line: number }
  /** The host is known with other key(s): same type and different key, or only other key types. */
  | { status: 'changed'; known: Array<{ file: string; line: number; keyType: string }> }
  | { status: 'unknown' };

/** Default files, as OpenSSH reads them: the user's file, then the system-wide one. */
export function defaultKnownHostsFiles(): string[] {
  return [join(homedir(), '.ssh', 'known_hosts'), '/etc/ssh/ssh_known_hosts'];
}

/** The name OpenSSH looks up for host:port — `host` for port 22, else `[host]:port`. */
export function hostLookupName(host: string, port: number): string {
  return port === 22 ? host : `[${host}]:${port}`;
}

/** `SHA256:<base64 without padding>` — the fingerprint format `ssh-keygen -lf` prints. */
export function fingerprint(key: Buffer): string {
  return 'SHA256:' + createHash('sha256').update(key).digest('base64').replace(/=+$/, '');
}

/** Key type name stored at the start of an SSH public key blob (`ssh-ed25519`, `ssh-rsa`, ...). */
export function keyTypeOf(key: Buffer): string {
  if (key.length < 4) return 'unknown';
  const n = key.readUInt32BE(0);
  if (n <= 0 || n > 64 || 4 + n > key.length) return 'unknown';
  return key.subarray(4, 4 + n).toString('latin1');
}

/** Parse known_hosts text. Malformed lines are skipped (as OpenSSH does). */
export function parseKnownHosts(text: string, file = '<known_hosts>'): KnownHostLine[] {
  const out: KnownHostLine[] = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    const s = raw.trim();
    if (!s || s.startsWith('#')) return;
    const f = s.split(/\s+/);
    let marker: KnownHostLine['marker'];
    if (f[0] === '@revoked' || f[0] === '@cert-authority') marker = f.shift() as KnownHostLine['marker'];
    else if (f[0]!.startsWith('@')) return;
    if (f.length < 3) return;
    const [patterns, keyType, b64] = f as [string, string, string];
    if (!/^[A-Za-z0-9+/]+=*$/.test(b64)) return;
    const line: KnownHostLine = { file, line: i + 1, patterns, keyType, key: Buffer.from(b64, 'base64') };
    if (marker) line.marker = marker;
    out.push(line);
  });
  return out;
}

function globToRegExp(glob: string): RegExp {
  const body = glob.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${body}$`, 'i');
}

/** Does a single (unhashed) pattern match the lookup name? */
function patternMatches(pattern: string, name: string): boolean {
  return globToRegExp(pattern).test(name);
}

/** Does the patterns field of a line match `name` (hashed or plain, with negation)? */
export function lineMatchesHost(patterns: string, name: string): boolean {
  if (patterns.startsWith('|1|')) {
    const [, , salt, hash] = patterns.split('|');
    if (!salt || !hash) return false;
    const mac = createHmac('sha1', Buffer.from(salt, 'base64')).update(name).digest('base64');
    return mac === hash;
  }
  let positive = false;
  for (const p of patterns.split(',')) {
    if (!p) continue;
    if (p.startsWith('!')) {
      if (patternMatches(p.slice(1), name)) return false;
    } else if (patternMatches(p, name)) positive = true;
  }
  return positive;
}

/**
 * Check a presented host key (raw SSH public key blob) for `host:port` against known_hosts lines.
 * Order of precedence: a revoked match refuses; an exact key match accepts; other keys known for the
 * host mean "changed"; nothing known means "unknown".
 */
export function verifyHostKey(lines: KnownHostLine[], host: string, port: number, key: Buffer): HostKeyVerdict {
  const name = hostLookupName(host, port);
  const forHost = lines.filter((l) => l.marker !== '@cert-authority' && lineMatchesHost(l.patterns, name));
  const revoked = lines.find((l) => l.marker === '@revoked' && l.key.equals(key));
  if (revoked) return { status: 'revoked', file: revoked.file, line: revoked.line };
  const match = forHost.find((l) => !l.marker && l.key.equals(key));
  if (match) return { status: 'match', file: match.file, line: match.line };
  const known = forHost.filter((l) => !l.marker).map((l) => ({ file: l.file, line: l.line, keyType: l.keyType }));
  return known.length ? { status: 'changed', known } : { status: 'unknown' };
}

/** Key types known for host:port, in file order (used to prefer those host key algorithms, as OpenSSH does). */
export function knownKeyTypes(lines: KnownHostLine[], host: string, port: number): string[] {
  const name = hostLookupName(host, port);
  const types: string[] = [];
  for (const l of lines) if (!l.marker && lineMatchesHost(l.patterns, name) && !types.includes(l.keyType)) types.push(l.keyType);
  return types;
}

/** Read and parse the given files; missing files contribute nothing. */
export function loadKnownHosts(files: string[]): KnownHostLine[] {
  const out: KnownHostLine[] = [];
  for (const f of files) {
    if (!existsSync(f)) continue;
    // Regular files of at most 4 MiB only (a FIFO or /dev/zero would hang or exhaust memory): exit 2 otherwise.
    checkRegularFileSync(f, '--known-hosts', FILE_LIMITS.config);
    out.push(...parseKnownHosts(readFileSync(f, 'utf8'), f));
  }
  return out;
}

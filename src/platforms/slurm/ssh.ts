/**
 * SSH connection to the Slurm login node (contract §8 slurm), with `ssh2`.
 *
 * - Authentication: public keys only, never a password or keyboard-interactive prompt (the
 *   equivalent of `ssh -o BatchMode=yes`): ssh-agent (`SSH_AUTH_SOCK`) when present, then the
 *   `--identity-file` key, or without one `~/.ssh/id_ed25519`, `id_ecdsa`, `id_rsa`.
 * - Host key: checked against `--known-hosts FILE` or `~/.ssh/known_hosts` + `/etc/ssh/ssh_known_hosts`
 *   (see `./knownhosts.ts`). Unknown, changed and revoked keys are refused with a message saying how to trust the key.
 * - Remote commands run as `/bin/sh -c '<command>'` whatever the login shell is; data that must not
 *   appear on a command line (secret values, the job script) travels on the channel's stdin.
 *
 * Used by the adapter (short-lived connections) and by the detached tunnel forwarder (`./tunnel.ts`).
 */
import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import ssh2, { type Client, type ClientChannel, type ConnectConfig } from 'ssh2';
import { PlatformUnavailableError, TaoInferError } from '../../errors.js';
import { shQuote } from '../../util/shell.js';
import { defaultKnownHostsFiles, fingerprint, hostLookupName, keyTypeOf, knownKeyTypes, loadKnownHosts, verifyHostKey, type HostKeyVerdict } from './knownhosts.js';
import { FILE_LIMITS, checkRegularFileSync } from '../../util/input-file.js';
import { tailKeeper } from '../../util/tail.js';

/** Where and as whom to connect. Paths only, never key material or passphrases. */
export interface SshTarget {
  user: string;
  host: string;
  /** TCP port, default 22. */
  port: number;
  /** Private key file (OpenSSH or PEM format). */
  identityFile?: string;
  /** known_hosts file; absent → OpenSSH's default files. */
  knownHosts?: string;
}

export interface ExecResult {
  /** Remote exit status (null when the command was killed by a signal). */
  code: number | null;
  signal?: string;
  stdout: string;
  stderr: string;
}

// ssh2 is CommonJS: Node's ESM loader exposes it as a default export only.
const { Client: SshClient, utils: sshUtils } = ssh2;

const PLATFORM = 'slurm';

// ssh2's default host key algorithm order (lib/protocol/constants.js); used to move known types first.
const HOST_KEY_ALGOS = ['ssh-ed25519', 'ecdsa-sha2-nistp256', 'ecdsa-sha2-nistp384', 'ecdsa-sha2-nistp521', 'rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa'];

function preferredHostKeyAlgos(types: string[]): string[] {
  const out: string[] = [];
  for (const t of types) {
    const algos = t === 'ssh-rsa' ? ['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa'] : [t];
    for (const a of algos) if (HOST_KEY_ALGOS.includes(a) && !out.includes(a)) out.push(a);
  }
  return out;
}

function targetName(t: SshTarget): string {
  return `${t.user}@${t.host}${t.port === 22 ? '' : `:${t.port}`}`;
}

/** The keys tried, in order; throws PlatformUnavailableError for an unreadable or unusable --identity-file. */
function privateKeys(t: SshTarget): Array<{ path: string; key: Buffer }> {
  if (t.identityFile) {
    let key: Buffer;
    // A special file (FIFO, device) or an oversized one is bad input (exit 2), refused before any read.
    if (existsSync(t.identityFile)) checkRegularFileSync(t.identityFile, '--identity-file', FILE_LIMITS.config);
    try {
      key = readFileSync(t.identityFile);
    } catch (e) {
      throw new PlatformUnavailableError(PLATFORM, `cannot read identity file ${t.identityFile}: ${(e as Error).message}`, {
        hint: 'Pass --identity-file with the path of your private key (e.g. ~/.ssh/id_ed25519).',
      });
    }
    const parsed = sshUtils.parseKey(key);
    if (parsed instanceof Error) {
      const encrypted = /encrypted|passphrase/i.test(parsed.message);
      throw new PlatformUnavailableError(PLATFORM, `identity file ${t.identityFile} is not a usable private key: ${parsed.message}`, {
        hint: encrypted
          ? 'tao-infer never asks for passphrases: load the key into ssh-agent (ssh-add <file>) and leave --identity-file off, or use a key without a passphrase.'
          : 'Pass the private key file (not the .pub file) in OpenSSH or PEM format.',
      });
    }
    return [{ path: t.identityFile, key }];
  }
  const out: Array<{ path: string; key: Buffer }> = [];
  for (const name of ['id_ed25519', 'id_ecdsa', 'id_rsa']) {
    const p = join(homedir(), '.ssh', name);
    if (!existsSync(p)) continue;
    try {
      checkRegularFileSync(p, '~/.ssh', FILE_LIMITS.config);
      const key = readFileSync(p);
      if (!(sshUtils.parseKey(key) instanceof Error)) out.push({ path: p, key });
    } catch {
      /* unreadable default key: skip, as ssh does */
    }
  }
  return out;
}

/** Human message + hint for a refused host key. */
function hostKeyError(t: SshTarget, files: string[], verdict: HostKeyVerdict, key: Buffer): PlatformUnavailableError {
  const name = hostLookupName(t.host, t.port);
  const fp = `${keyTypeOf(key)} ${fingerprint(key)}`;
  const file = t.knownHosts ?? files[0]!;
  const scan = `ssh-keyscan ${t.port === 22 ? '' : `-p ${t.port} `}${shQuote(t.host)} >> ${shQuote(file)}`;
  if (verdict.status === 'revoked')
    return new PlatformUnavailableError(PLATFORM, `the host key of ${name} (${fp}) is marked @revoked in ${verdict.file}:${verdict.line}; refusing to connect`, {
      hint: 'Ask the cluster administrators for the current host key.',
    });
  if (verdict.status === 'changed') {
    const where = verdict.known.map((k) => `${k.file}:${k.line} (${k.keyType})`).join(', ');
    return new PlatformUnavailableError(
      PLATFORM,
      `the host key of ${name} has CHANGED: the server presented ${fp}, which does not match ${where}. Someone could be intercepting the connection; refusing to connect`,
      {
        hint: `If the cluster administrators confirm the new key ${fingerprint(key)}, remove the old entry with ssh-keygen -R ${shQuote(name)} -f ${shQuote(verdict.known[0]!.file)} and add the new one (${scan}).`,
      },
    );
  }
  return new PlatformUnavailableError(PLATFORM, `the host key of ${name} (${fp}) is not in ${files.join(' or ')}; refusing to connect to an unknown host`, {
    hint: `Check the fingerprint with your cluster administrators, then trust it: ${scan} (or connect once with ssh -p ${t.port} ${t.user}@${t.host} and answer yes), or pass --known-hosts FILE.`,
  });
}

/**
 * An open SSH connection to the login node. Create with `connectSsh`; always `close()` it.
 */
export class SshSession {
  constructor(
    readonly client: Client,
    readonly target: SshTarget,
  ) {}

  /**
   * Run `command` (a POSIX sh command line, never holding a secret) and collect its output.
   * `stdin` is written to the remote command's standard input and closed: the only way secrets travel.
   * Resolves with the exit status (non-zero does not throw); rejects on connection failure or abort.
   */
  exec(command: string, opts: { stdin?: string | Buffer; signal?: AbortSignal } = {}): Promise<ExecResult> {
    return new Promise((resolve, reject) => {
      const onClosed = () => reject(new PlatformUnavailableError(PLATFORM, `SSH connection to ${targetName(this.target)} closed while running: ${command.slice(0, 200)}`));
      this.client.once('close', onClosed);
      this.client.exec(`/bin/sh -c ${shQuote(command)}`, (err, stream) => {
        if (err) {
          this.client.removeListener('close', onClosed);
          return reject(sshFailure(this.target, err));
        }
        // Bounded: at most the last 64 MiB of stdout and 1 MiB of stderr are kept (a huge remote log cannot exhaust memory).
        const out = tailKeeper(64 * 1024 * 1024);
        const err2 = tailKeeper(1024 * 1024);
        let code: number | null = null;
        let signal: string | undefined;
        const onAbort = () => {
          stream.close();
          reject(opts.signal?.reason ?? new Error('aborted'));
        };
        opts.signal?.addEventListener('abort', onAbort, { once: true });
        stream.on('data', (d: Buffer) => out.add(d));
        stream.stderr.on('data', (d: Buffer) => err2.add(d));
        stream.on('exit', (c: number | null, sig?: string) => {
          code = c;
          if (sig) signal = sig;
        });
        stream.on('close', () => {
          this.client.removeListener('close', onClosed);
          opts.signal?.removeEventListener('abort', onAbort);
          const r: ExecResult = { code, stdout: out.text(), stderr: err2.text() };
          if (signal) r.signal = signal;
          resolve(r);
        });
        if (opts.stdin !== undefined) stream.end(opts.stdin);
        else stream.end();
      });
    });
  }

  /**
   * Run `command` and hand its stdout chunks to the caller as they arrive. The remote stdin stays
   * open until the returned channel is ended, so a remote watcher can notice when we go away.
   */
  execStream(command: string): Promise<ClientChannel> {
    return new Promise((resolve, reject) => {
      this.client.exec(`/bin/sh -c ${shQuote(command)}`, (err, stream) => (err ? reject(sshFailure(this.target, err)) : resolve(stream)));
    });
  }

  close(): void {
    this.client.end();
  }
}

/** Map an ssh2 error to a PlatformUnavailableError with a fix. */
export function sshFailure(t: SshTarget, err: unknown): TaoInferError {
  if (err instanceof TaoInferError) return err;
  const e = err as Error & { level?: string; code?: string };
  const msg = e?.message ?? String(err);
  const who = targetName(t);
  if (e?.level === 'client-authentication')
    return new PlatformUnavailableError(PLATFORM, `SSH authentication as ${who} failed: the server accepted none of the keys tried (ssh-agent, ${t.identityFile ?? '~/.ssh/id_*'})`, {
      hint: `Check --slurm-user/SLURM_USER ('${t.user}') and that the public key of ${t.identityFile ?? 'your key'} is in ~${t.user}/.ssh/authorized_keys on ${t.host}. Password login is never used.`,
      cause: err,
    });
  if (e?.code === 'ECONNREFUSED' || e?.code === 'EHOSTUNREACH' || e?.code === 'ENETUNREACH')
    return new PlatformUnavailableError(PLATFORM, `cannot reach ${t.host}:${t.port} (${e.code})`, {
      hint: 'Check --slurm-host/SLURM_HOSTNAME and --ssh-port, and that you are on the network (VPN) that reaches the login node.',
      cause: err,
    });
  if (e?.code === 'ENOTFOUND' || e?.code === 'EAI_AGAIN')
    return new PlatformUnavailableError(PLATFORM, `cannot resolve host name ${t.host}`, { hint: 'Check --slurm-host/SLURM_HOSTNAME.', cause: err });
  if (/timed out/i.test(msg))
    return new PlatformUnavailableError(PLATFORM, `SSH connection to ${who} timed out`, { hint: 'Check the host, port and network.', cause: err });
  return new PlatformUnavailableError(PLATFORM, `SSH connection to ${who} failed: ${msg}`, { cause: err });
}

/**
 * Open an SSH connection to `target`, verifying the host key and authenticating with keys only.
 * @param env environment (reads `SSH_AUTH_SOCK`)
 * @throws PlatformUnavailableError — unknown/changed host key (with how to trust it), authentication
 *   failure (naming the user), unreachable host, no key available.
 */
export async function connectSsh(target: SshTarget, env: NodeJS.ProcessEnv, opts: { readyTimeoutMs?: number; keepaliveMs?: number } = {}): Promise<SshSession> {
  const files = target.knownHosts ? [target.knownHosts] : defaultKnownHostsFiles();
  if (target.knownHosts && !existsSync(target.knownHosts))
    throw new PlatformUnavailableError(PLATFORM, `known_hosts file ${target.knownHosts} does not exist`, { hint: 'Pass --known-hosts with an existing file, or leave it off to use ~/.ssh/known_hosts.' });
  const lines = loadKnownHosts(files);
  const keys = privateKeys(target);
  const agent = env.SSH_AUTH_SOCK && existsSync(env.SSH_AUTH_SOCK) ? env.SSH_AUTH_SOCK : undefined;
  if (!agent && keys.length === 0)
    throw new PlatformUnavailableError(PLATFORM, 'no SSH key available: no ssh-agent (SSH_AUTH_SOCK) and no ~/.ssh/id_ed25519, id_ecdsa or id_rsa', {
      hint: 'Pass --identity-file <private key> or start ssh-agent and ssh-add your key.',
    });
  const auth: NonNullable<ConnectConfig['authHandler']> = [];
  if (agent) auth.push({ type: 'agent', username: target.user, agent } as never);
  for (const k of keys) auth.push({ type: 'publickey', username: target.user, key: k.key } as never);

  let refused: PlatformUnavailableError | undefined;
  const pref = preferredHostKeyAlgos(knownKeyTypes(lines, target.host, target.port));
  const client = new SshClient();
  const config: ConnectConfig = {
    host: target.host,
    port: target.port,
    username: target.user,
    authHandler: auth,
    tryKeyboard: false,
    readyTimeout: opts.readyTimeoutMs ?? 20_000,
    keepaliveInterval: opts.keepaliveMs ?? 15_000,
    keepaliveCountMax: 4,
    hostVerifier: (key: Buffer) => {
      const verdict = verifyHostKey(lines, target.host, target.port, key);
      if (verdict.status === 'match') return true;
      refused = hostKeyError(target, files, verdict, key);
      return false;
    },
  };
  if (pref.length) config.algorithms = { serverHostKey: { remove: pref, prepend: pref } as never };
  return new Promise<SshSession>((resolve, reject) => {
    let settled = false;
    client.once('ready', () => {
      settled = true;
      resolve(new SshSession(client, target));
    });
    client.on('error', (err) => {
      if (settled) return;
      settled = true;
      client.end();
      reject(refused ?? sshFailure(target, err));
    });
    client.once('close', () => {
      if (settled) return;
      settled = true;
      reject(refused ?? new PlatformUnavailableError(PLATFORM, `SSH connection to ${targetName(target)} closed during the handshake`));
    });
    client.connect(config);
  });
}

/**
 * Detached helper processes that outlive the CLI (slurm SSH tunnel, k8s port-forward, brev port-forward).
 * Their PID is recorded in the registry entry; stop ends them by that PID only.
 */
import { spawn } from 'node:child_process';
import { openSync, closeSync, mkdirSync, existsSync, lstatSync, readFileSync, constants as fsConstants } from 'node:fs';
import { tmpdir } from 'node:os';
import { createConnection } from 'node:net';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { PlatformUnavailableError } from '../errors.js';

export interface DetachedOptions {
  /** Executable (e.g. process.execPath) and its arguments. Never put a secret here. */
  command: string;
  args: string[];
  /** Environment of the child (secrets may travel here, never in args). */
  env?: NodeJS.ProcessEnv;
  /** File receiving the child's stdout+stderr. */
  logFile: string;
  cwd?: string;
}

/**
 * Where a forwarder's log goes: `<tmpdir>/tao-infer-<uid>/forwarders/<platform>-<job_id>.log`.
 * The per-user directory (mode 0700) keeps other users of a shared host from reading the log or planting a
 * symlink in its place; it is created on first use.
 * @throws PlatformUnavailableError (exit 3) when that directory is a symlink or belongs to another user.
 */
export function forwarderLogFile(platform: string, jobId: string): string {
  const uid = process.getuid?.();
  const base = join(tmpdir(), `tao-infer-${uid ?? 'user'}`);
  mkdirSync(join(base, 'forwarders'), { recursive: true, mode: 0o700 });
  const st = lstatSync(base);
  if (st.isSymbolicLink() || !st.isDirectory() || (uid !== undefined && st.uid !== uid))
    throw new PlatformUnavailableError(platform, `${base} (where forwarder logs go) is not a directory of this user`, {
      hint: `Remove ${base} (it may have been planted by another user), or set TMPDIR to a directory of your own.`,
    });
  return join(base, 'forwarders', `${platform}-${jobId}.log`);
}

/**
 * Start a process in its own session, not attached to our stdio, and return its PID.
 * The log file is opened for appending with mode 0600 and without following a symlink.
 */
export function spawnDetached(opts: DetachedOptions): number {
  mkdirSync(dirname(opts.logFile), { recursive: true, mode: 0o700 });
  const fd = openSync(opts.logFile, fsConstants.O_WRONLY | fsConstants.O_APPEND | fsConstants.O_CREAT | fsConstants.O_NOFOLLOW, 0o600);
  try {
    const child = spawn(opts.command, opts.args, {
      detached: true,
      stdio: ['ignore', fd, fd],
      env: opts.env ?? process.env,
      cwd: opts.cwd,
    });
    if (child.pid === undefined) throw new Error(`could not start ${opts.command}`);
    child.unref();
    return child.pid;
  } finally {
    closeSync(fd);
  }
}

/** True when a process with this PID exists (and is not a zombie we can see). */
export function isAlive(pid: number | undefined): boolean {
  if (!pid || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** End a process by PID: SIGTERM, then SIGKILL after `graceMs`. Resolves when it is gone (or was never there). */
export async function killPid(pid: number | undefined, graceMs = 3000): Promise<void> {
  if (!pid || !isAlive(pid)) return;
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return;
  }
  const until = Date.now() + graceMs;
  while (Date.now() < until) {
    if (!isAlive(pid)) return;
    await sleep(50);
  }
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    /* gone */
  }
  for (let i = 0; i < 40 && isAlive(pid); i++) await sleep(25);
}

/** Resolve true once a TCP connect to host:port succeeds, false after `timeoutMs`. */
export async function waitForPort(host: string, port: number, timeoutMs: number): Promise<boolean> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = createConnection({ host, port });
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
      s.setTimeout(1000, () => {
        s.destroy();
        resolve(false);
      });
    });
    if (ok) return true;
    await sleep(100);
  }
  return false;
}

/**
 * True when `pid` is alive and, where /proc exists, its argv has each of `needles` as a substring
 * of some argument — so a recycled PID is never signalled. Without /proc: alive is enough.
 */
export function isOwnProcess(pid: number | undefined, needles: string[]): boolean {
  if (!pid || !isAlive(pid)) return false;
  if (!existsSync('/proc/self/cmdline')) return true;
  try {
    const args = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    return needles.every((n) => args.some((a) => a.includes(n)));
  } catch {
    return false;
  }
}

/** Environment for a forwarder: only what SSH/the client needs, never the caller's secrets. `extra` names are kept too. */
export function forwarderEnv(env: NodeJS.ProcessEnv, extra: string[] = []): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = {};
  for (const k of ['PATH', 'HOME', 'USER', 'LOGNAME', 'LANG', 'SSH_AUTH_SOCK', 'TMPDIR', ...extra]) if (env[k] !== undefined) out[k] = env[k];
  return out;
}

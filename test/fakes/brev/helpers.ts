/**
 * Test helpers around the fake `brev` executable (test/fakes/brev/brev): a state dir with instances,
 * credentials and an ssh config whose host aliases point at the test sshd (127.0.0.1:2222, see
 * test/infra/setup.sh), the way `brev login`/`brev refresh` write ~/.brev/ssh_config for real instances.
 */
import { execa } from 'execa';
import { mkdtempSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

export const FAKE_BREV_DIR = resolve(import.meta.dirname);
const INFRA = process.env.TAO_INFER_INFRA_DIR ?? '/tmp/tao-infer-infra';
export const SSH_KEY = join(INFRA, 'ssh', 'client_key');
export const SSH_KNOWN_HOSTS = join(INFRA, 'ssh', 'known_hosts');

export interface FakeInstance {
  name: string;
  id?: string;
  status?: string;
  build_status?: string;
  shell_status?: string;
  health_status?: string;
  instance_type?: string;
  gpu?: string;
  /** The first K `brev exec` calls fail as if sshd were not up yet. */
  unreachable_execs?: number;
}

export interface FakeBrev {
  state: string;
  sshConfig: string;
  /** Env for processes that should see the fake: PATH with the fake first, FAKE_BREV_STATE, TAO_BREV_SSH_CONFIG. */
  env: Record<string, string>;
  setInstances(list: FakeInstance[]): void;
  instances(): FakeInstance[];
  login(): void;
  logout(): void;
  /** Every argv the fake received, in order. */
  argvLog(): string[][];
  forwards(): { pid: number; local: number; remote: number; instance: string }[];
  /** Instances `brev exec` started because they were STOPPED (brev-cli runExecCommand). */
  starts(): { instance: string; by: string }[];
  /** End the ssh multiplexing masters the ssh config's `ControlMaster auto` may have left (as brev's config does). */
  closeMasters(): Promise<void>;
}

/** The records of a JSON-lines file the fake appends to (none when it does not exist yet). */
function readJsonl<T>(f: string): T[] {
  if (!existsSync(f)) return [];
  return readFileSync(f, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as T);
}

/** A fresh fake Brev account: logged in (unless `loggedIn: false`) with the given instances. */
export function createFakeBrev(instances: FakeInstance[], opts: { loggedIn?: boolean } = {}): FakeBrev {
  const state = mkdtempSync(join(tmpdir(), 'fake-brev-'));
  const sshConfig = join(state, 'ssh_config');
  const write = (list: FakeInstance[]) => {
    const full = list.map((w, i) => ({ id: w.id ?? `fake${String(i).padStart(6, '0')}`, ...w }));
    writeFileSync(join(state, 'instances.json'), JSON.stringify({ instances: full }, null, 2));
    writeFileSync(
      sshConfig,
      full
        .map(
          (w) =>
            `Host ${w.name}\n  Hostname 127.0.0.1\n  Port 2222\n  User root\n  IdentityFile ${SSH_KEY}\n  IdentitiesOnly yes\n` +
            `  UserKnownHostsFile ${SSH_KNOWN_HOSTS}\n  HostKeyAlias [127.0.0.1]:2222\n  StrictHostKeyChecking yes\n  LogLevel ERROR\n` +
            // brev's own entries multiplex (brev-cli pkg/ssh/sshconfigurer.go SSHConfigEntryTemplateV3):
            `  ControlMaster auto\n  ControlPath ${join(state, 'cm-%C')}\n  ControlPersist 10m\n`,
        )
        .join('\n'),
      { mode: 0o600 },
    );
  };
  write(instances);
  const fb: FakeBrev = {
    state,
    sshConfig,
    env: {
      PATH: `${FAKE_BREV_DIR}:${process.env.PATH ?? ''}`,
      FAKE_BREV_STATE: state,
      TAO_BREV_SSH_CONFIG: sshConfig,
    },
    setInstances: write,
    instances: () => JSON.parse(readFileSync(join(state, 'instances.json'), 'utf8')).instances,
    login: () => writeFileSync(join(state, 'credentials.json'), JSON.stringify({ logged_in: true })),
    logout: () => writeFileSync(join(state, 'credentials.json'), JSON.stringify({ logged_in: false })),
    argvLog: () => readJsonl(join(state, 'argv.jsonl')),
    starts: () => readJsonl(join(state, 'starts.jsonl')),
    closeMasters: async () => {
      for (const w of fb.instances())
        await execa('ssh', ['-F', sshConfig, '-O', 'exit', w.name], { reject: false, timeout: 10_000 });
    },
    forwards: () => readJsonl(join(state, 'forwards.jsonl')),
  };
  if (opts.loggedIn !== false) fb.login();
  return fb;
}

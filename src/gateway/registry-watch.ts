/**
 * Following the registry file while the gateway runs (issue 12, point 2): `fs.watch` on its directory
 * (the registry is replaced by rename, so a watch on the file itself would go stale) plus a periodic
 * `stat` fallback for file systems without inotify. A change (inode, size or mtime) re-reads the file with
 * Registry.peek, which never writes, locks or moves it. A file that cannot be read keeps the last good
 * state and is reported through `onError`.
 */
import { promises as fsp, watch, type FSWatcher } from 'node:fs';
import { basename, dirname } from 'node:path';
import { Registry, type RegistryState } from '../registry/store.js';

export interface RegistryWatcher {
  /** Read the file now if it changed (or always with force) and call onState. */
  refresh(force?: boolean): Promise<void>;
  close(): void;
}

/**
 * Watch `file`; `onState` receives every new state (also the first one, before the promise resolves).
 * @param pollMs period of the stat fallback
 */
export async function watchRegistry(
  file: string,
  onState: (s: RegistryState) => void,
  onError: (e: Error) => void,
  pollMs = 1000,
): Promise<RegistryWatcher> {
  const registry = new Registry(file);
  let signature = '';
  let pending: Promise<void> | undefined;
  let again = false;
  let closed = false;

  const read = async (force: boolean) => {
    let sig = 'missing';
    try {
      const st = await fsp.stat(file);
      sig = `${st.ino}:${st.size}:${st.mtimeMs}`;
    } catch {
      /* missing: an empty registry */
    }
    if (!force && sig === signature) return;
    try {
      const state = await registry.peek();
      signature = sig;
      if (!closed) onState(state);
    } catch (e) {
      signature = sig;
      onError(e as Error);
    }
  };
  const refresh = async (force = false): Promise<void> => {
    if (pending) {
      again = true;
      return pending;
    }
    pending = (async () => {
      do {
        again = false;
        await read(force);
      } while (again && !closed);
    })().finally(() => (pending = undefined));
    return pending;
  };

  await refresh(true);
  let watcher: FSWatcher | undefined;
  try {
    watcher = watch(dirname(file), { persistent: false }, (_event, name) => {
      if (!name || name.toString() === basename(file)) void refresh();
    });
    watcher.on('error', () => watcher?.close());
  } catch {
    /* no inotify, or the directory does not exist yet: the poll below still notices changes */
  }
  const timer = setInterval(() => void refresh(), pollMs);
  timer.unref();
  return {
    refresh,
    close() {
      closed = true;
      clearInterval(timer);
      watcher?.close();
    },
  };
}

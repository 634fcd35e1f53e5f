/** The per-user cache directory of tao-infer (references cache, the bin's V8 code cache). Cheap: node:os and node:path only. */
import { homedir } from 'node:os';
import { isAbsolute, join } from 'node:path';

/**
 * `$XDG_CACHE_HOME/tao-infer` when XDG_CACHE_HOME is absolute, else `~/.cache/tao-infer` (HOME, then the
 * passwd entry), or undefined when no absolute home directory is known. Nothing is created here.
 */
export function cacheDir(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const xdg = env.XDG_CACHE_HOME;
  if (xdg && isAbsolute(xdg)) return join(xdg, 'tao-infer');
  let home = env.HOME;
  if (!home) {
    try {
      home = homedir();
    } catch {
      return undefined;
    }
  }
  return home && isAbsolute(home) ? join(home, '.cache', 'tao-infer') : undefined;
}

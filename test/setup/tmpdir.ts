// Gives the whole test run one private temporary directory (TMPDIR for every worker and every process the
// tests start, and XDG_CACHE_HOME inside it for the validated-references cache) and removes it afterwards,
// so runs leave nothing behind in /tmp or in the user's ~/.cache.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export default function setup(): () => void {
  const dir = mkdtempSync(join(tmpdir(), 'tao-infer-tests-'));
  process.env.TMPDIR = dir;
  process.env.XDG_CACHE_HOME = join(dir, 'cache');
  return () => rmSync(dir, { recursive: true, force: true });
}

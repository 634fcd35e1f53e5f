/** Locating the installed package (its references/, platforms/ and versions.yaml). Cheap: no parsing. */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Project root: the nearest ancestor of this module holding `references/service.yaml`, or undefined. */
export function findProjectRoot(): string | undefined {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    if (existsSync(join(dir, 'references', 'service.yaml'))) return dir;
    dir = dirname(dir);
  }
  return undefined;
}

/**
 * The canary secret: one random value per test run, set as HF_TOKEN (and, where a second secret is needed, as
 * WANDB_API_KEY) so tests can prove a secret value never shows where it must not: argv on either side, registry,
 * logs, manifests, request bodies, output.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { expect } from 'vitest';

/** A fresh random canary value with a recognisable prefix. */
export function makeCanary(prefix = 'tao-canary'): string {
  return `${prefix}-${randomBytes(8).toString('hex')}`;
}

/** The canary used as HF_TOKEN by every test of this run. */
export const CANARY = makeCanary();
/** Its base64 form, the way a Kubernetes Secret's data carries it. */
export const CANARY_B64 = Buffer.from(CANARY).toString('base64');

/**
 * Assert that none of `secrets` occurs in any of `places` ([where, text] pairs: outputs, argv samples, log text)
 * nor in any of `files` that exist. The failure message names the place.
 */
export function expectNoCanary(places: Array<[string, string]>, files: string[] = [], secrets: string[] = [CANARY]): void {
  for (const [where, text] of places) for (const s of secrets) expect(text, where).not.toContain(s);
  for (const f of files) {
    if (!existsSync(f)) continue;
    const text = readFileSync(f, 'utf8');
    for (const s of secrets) expect(text, f).not.toContain(s);
  }
}

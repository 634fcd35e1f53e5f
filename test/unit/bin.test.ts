// The published bin (package.json `bin`) is the esbuild bundle made by `npm run build` (scripts/bundle.mjs).
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CLI, ROOT } from '../helpers/cli.js';

const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'));

function* tsFiles(dir: string): Generator<string> {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) yield* tsFiles(p);
    else if (name.endsWith('.ts')) yield p;
  }
}

describe('the tao-infer bin', () => {
  it('is the bundle, executable, with a node shebang, and runs without `node` in front', () => {
    expect(pkg.bin['tao-infer']).toBe('dist/bin/tao-infer.js');
    expect(pkg.files).toContain('dist/bin');
    expect(statSync(CLI).mode & 0o111).toBe(0o111);
    expect(readFileSync(CLI, 'utf8').split('\n')[0]).toBe('#!/usr/bin/env node');
    expect(execFileSync(CLI, ['--version'], { encoding: 'utf8' }).trim()).toBe(pkg.version);
  });

  it('keeps heavy SDKs out of the bundle (loaded from node_modules by the platforms that need them)', () => {
    const bundled = readdirSync(join(ROOT, 'dist', 'bin')).filter((f) => f.endsWith('.js')).map((f) => readFileSync(join(ROOT, 'dist', 'bin', f), 'utf8')).join('\n');
    expect(bundled).toMatch(/from"@kubernetes\/client-node"|from "@kubernetes\/client-node"/);
    expect(bundled).not.toMatch(/class KubeConfig\b/);
    expect(bundled).toMatch(/from"ssh2"|from "ssh2"/);
    expect(bundled).not.toMatch(/class SFTP\b/); // ssh2 internals
  });

  it('bundles every script an adapter starts as a detached process next to the chunks that start it', () => {
    const scripts = new Set<string>();
    for (const f of tsFiles(join(ROOT, 'src'))) for (const m of readFileSync(f, 'utf8').matchAll(/new URL\(\s*'\.\/([\w.-]+\.js)'\s*,\s*import\.meta\.url\s*\)/g)) scripts.add(m[1]!);
    expect(scripts.size).toBeGreaterThan(0);
    for (const s of scripts) expect(existsSync(join(ROOT, 'dist', 'bin', s)), s).toBe(true);
  });
});

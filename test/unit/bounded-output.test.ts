// Issue 8 point 2 for command output read over SSH: only the last bytes are kept.
import { describe, expect, it } from 'vitest';
import { tailKeeper } from '../../src/util/tail.js';

describe('tailKeeper', () => {
  it('keeps everything below the bound', () => {
    const t = tailKeeper(100);
    t.add(Buffer.from('hello '));
    t.add(Buffer.from('world'));
    expect(t.text()).toBe('hello world');
  });

  it('keeps only the last max bytes of an endless stream, and says so', () => {
    const t = tailKeeper(1024);
    for (let i = 0; i < 100_000; i++) t.add(Buffer.from(`line ${i}\n`));
    const text = t.text();
    expect(text.startsWith('[…earlier output cut]\n')).toBe(true);
    expect(Buffer.byteLength(text)).toBeLessThanOrEqual(1024 + Buffer.byteLength('[…earlier output cut]\n'));
    expect(text.endsWith('line 99999\n')).toBe(true);
  });
});

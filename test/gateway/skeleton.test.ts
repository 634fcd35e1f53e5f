/**
 * The body skeleton (src/gateway/skeleton.ts): the gateway finds `model` and runs the per-arch checks on
 * it instead of parsing large bodies, so it must keep structure and short strings exactly, cut long
 * strings without breaking an escape or a UTF-8 character, and not depend on where chunks split.
 */
import { describe, expect, it } from 'vitest';
import { JsonSkeleton } from '../../src/gateway/skeleton.js';

function skeletonOf(text: string, splits: number[] = [], keep = 16): string {
  const buf = Buffer.from(text);
  const s = new JsonSkeleton(keep);
  let at = 0;
  for (const cut of [...splits, buf.length]) {
    s.push(buf.subarray(at, cut));
    at = cut;
  }
  return s.text();
}

describe('JsonSkeleton', () => {
  it('keeps structure and short strings, drops whitespace, cuts long strings', () => {
    const big = 'A'.repeat(5000);
    const body = `{ "messages": [ {"role": "user", "content": [{"type":"video_url","video_url":{"url":"data:video/mp4;base64,${big}"}}]} ],\n "model" : "cosmos-rl", "stream": true }`;
    const doc = JSON.parse(skeletonOf(body));
    expect(doc.model).toBe('cosmos-rl');
    expect(doc.stream).toBe(true);
    expect(doc.messages[0].content[0].video_url.url).toBe('data:video/mp4;b');
    expect(doc.messages[0].content[0].type).toBe('video_url');
  });

  it('gives the same skeleton wherever the chunks split, with escaped quotes and backslash runs in long strings', () => {
    const text = JSON.stringify({ messages: [{ role: 'user', content: `say "hi" \\\\" there ${'\\'.repeat(7)}"${'x'.repeat(40)}` }], model: 'job-1234' });
    const whole = skeletonOf(text);
    expect(JSON.parse(whole).model).toBe('job-1234');
    for (let i = 1; i < text.length; i++) expect(skeletonOf(text, [i])).toBe(whole);
    for (let i = 1; i + 3 < text.length; i += 3) expect(skeletonOf(text, [i, i + 1, i + 3])).toBe(whole);
  });

  it('never splits a \\u escape or a multi-byte character when cutting', () => {
    const text = JSON.stringify({ a: 'ééééééééé€€€€€€€€😀😀😀😀', b: 'abcdefghijklmno\\u00e9\\u00e9', model: 'm' }).replace('\\\\u', '\\u');
    for (let keep = 5; keep < 40; keep++) {
      const s = new JsonSkeleton(keep);
      s.push(Buffer.from(text));
      const doc = JSON.parse(s.text());
      expect(doc.model).toBe('m');
      expect(doc.a).not.toContain('\uFFFD');
    }
  });

  it('reports overflow when the structure outside strings exceeds the cap', () => {
    const s = new JsonSkeleton(16, 1000);
    s.push(Buffer.from(JSON.stringify({ messages: Array.from({ length: 500 }, () => 1) })));
    expect(s.overflow).toBe(true);
  });
});

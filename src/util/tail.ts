/**
 * Bounded collection of a command's output (issue 8.2: every read has a bound): the last `max` bytes of a
 * byte stream are kept, older chunks are dropped, and the text says when something was cut.
 */

/**
 * A collector that keeps the last `max` bytes given to `add`. `text()` decodes them as UTF-8, prefixed with
 * `[…earlier output cut]` and a newline when older output was dropped.
 */
export function tailKeeper(max: number): { add(d: Buffer): void; text(): string } {
  const chunks: Buffer[] = [];
  let size = 0;
  let cut = false;
  return {
    add(d) {
      chunks.push(d);
      size += d.length;
      while (chunks.length > 1 && size - chunks[0]!.length >= max) {
        size -= chunks.shift()!.length;
        cut = true;
      }
    },
    text() {
      const all = Buffer.concat(chunks, size);
      const kept = all.length > max ? all.subarray(all.length - max) : all;
      return (cut || all.length > max ? '[…earlier output cut]\n' : '') + kept.toString('utf8');
    },
  };
}

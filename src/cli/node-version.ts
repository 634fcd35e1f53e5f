/** The Node.js versions the bin runs on (package.json `engines`), checked before the CLI bundle loads. */

/** What package.json `engines.node` says, for messages. */
export const SUPPORTED_NODE = '^20.19.0 || >=22.12.0';

/**
 * True when Node `version` (e.g. process.versions.node, "20.19.2") loads an ES module with `require()` without a
 * flag, as the CLI bundle does for @kubernetes/client-node: 20.19+, 22.12+ and 23+ (Node's "Loading ECMAScript
 * modules using require()", unflagged in those lines; 21 and 22.0–22.11 need --experimental-require-module).
 */
export function nodeSupported(version: string): boolean {
  const [major = 0, minor = 0] = version.split('.').map((n) => Number.parseInt(n, 10));
  if (major === 20) return minor >= 19;
  if (major === 22) return minor >= 12;
  return major >= 23;
}

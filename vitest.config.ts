import { defineConfig } from 'vitest/config';

// Integration tests share one Docker engine, one sshd, one Slurm and loopback ports (the stand-in
// services listen on 8080 inside their node), so test files run one after another.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/setup/tmpdir.ts', 'test/setup/ports.ts'],
    fileParallelism: false,
    testTimeout: 180_000,
    hookTimeout: 180_000,
    // The JSON report lets .ci/run print a plain 'N passed, N failed' line.
    reporters: ['default', ['json', { outputFile: 'test-results/vitest.json' }]],
  },
});

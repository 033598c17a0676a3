// `npm run test:reliability`: the scenarios of test/reliability/ (crashes, outages, bad input,
// tenant isolation), one file at a time, since each drives whole hub processes and measures them.
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/reliability/**/*.test.ts'],
    pool: 'forks',
    fileParallelism: false,
    testTimeout: 240_000,
    hookTimeout: 120_000,
  },
});

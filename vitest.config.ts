import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    globalSetup: ["test/global-setup.ts"],
    // Integration tests start real memcached processes; each file uses its own free ports.
    testTimeout: 20_000,
    hookTimeout: 30_000,
    pool: "forks",
    fileParallelism: true,
  },
});

import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    root: new URL("..", import.meta.url).pathname,
    include: ["test/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Proxies log JSON lines; keep test output to warnings (tests that check logs capture them).
    env: { HBONE_LOG_LEVEL: "warn" },
  },
});

// Lint: a small set of rules that catch real bugs (unhandled promises, unused code, loose equality,
// switch fallthrough), type-aware over host/, test/ and bench/ (tsconfig.check.json). Formatting is
// Prettier's job (npm run format:check). Not linted: generated protobuf code, and assembly/ (AssemblyScript:
// its decorators on functions do not parse as TypeScript, and `asc --noEmit` in npm run typecheck checks it).
import { defineConfig } from "eslint/config";
import tseslint from "typescript-eslint";

const common = {
  eqeqeq: ["error", "always"],
  "no-fallthrough": "error",
  "prefer-const": "error",
};
const unusedVars = {
  args: "after-used",
  argsIgnorePattern: "^_",
  varsIgnorePattern: "^_",
  caughtErrors: "none",
  ignoreRestSiblings: true, // `const { a, ...rest } = o` omits a on purpose
};

export default defineConfig(
  {
    ignores: ["dist/**", "node_modules/**", "assembly/**", "host/xds/gen/**", "host/inpod/gen/**", "bench/results/**"],
  },
  {
    files: ["host/**/*.ts", "test/**/*.ts", "bench/**/*.ts"],
    languageOptions: {
      parser: tseslint.parser,
      parserOptions: { project: "./tsconfig.check.json", tsconfigRootDir: import.meta.dirname },
    },
    plugins: { "@typescript-eslint": tseslint.plugin },
    rules: {
      ...common,
      "@typescript-eslint/no-floating-promises": "error",
      "@typescript-eslint/no-misused-promises": "error",
      "@typescript-eslint/await-thenable": "error",
      "@typescript-eslint/no-unused-vars": ["error", unusedVars],
    },
  },
  {
    files: ["**/*.js", "**/*.mjs"],
    languageOptions: { globals: { console: "readonly", process: "readonly", URL: "readonly" } },
    rules: { ...common, "no-unused-vars": ["error", unusedVars], "no-undef": "error" },
  },
);

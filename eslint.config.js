import tseslint from 'typescript-eslint';
import { layersPlugin } from './eslint-layers.js';

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', 'scripts/', 'eslint.config.js', 'eslint-layers.js'] },
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/switch-exhaustiveness-check': ['error', { considerDefaultExhaustiveForUnions: true }],
      '@typescript-eslint/consistent-type-imports': 'error',
      '@typescript-eslint/no-explicit-any': 'error',
    },
  },
  {
    files: ['src/**/*.ts'],
    plugins: { agentcell: layersPlugin },
    rules: {
      'agentcell/layers': 'error',
      'no-restricted-imports': [
        'error',
        {
          // The classic API is 400 KB of the CLI bundle (measured: 1.10 → 0.70 MB, start-up −6 ms).
          paths: [{ name: 'zod', message: "import * as z from 'zod/mini': the classic API doubles the CLI bundle" }],
        },
      ],
      'no-restricted-syntax': [
        'error',
        {
          // Node's recursive mkdir spins forever where a parent exists but mkdir says ENOENT (/proc).
          selector: "CallExpression[callee.name=/^mkdir/] Property[key.name='recursive']",
          message: 'use makeDirs (src/_internal/make-dirs.ts): recursive mkdir can loop forever',
        },
        {
          selector: "CallExpression[callee.property.name=/^mkdir/] Property[key.name='recursive']",
          message: 'use makeDirs (src/_internal/make-dirs.ts): recursive mkdir can loop forever',
        },
      ],
    },
  },
  {
    files: ['test/**', 'bench/**'],
    // node:test's describe/it return promises the runner itself awaits.
    rules: { '@typescript-eslint/no-non-null-assertion': 'off', '@typescript-eslint/no-floating-promises': 'off' },
  },
);

// ESLint flat config. TypeScript sources get type-aware rules (typescript-eslint's strict + stylistic sets);
// plain JavaScript (build script, launcher, tests) gets the recommended rules with Node globals.
import js from '@eslint/js';
import globals from 'globals';
import tseslint from 'typescript-eslint';

export default tseslint.config(
	{
		// Build outputs, installed packages, and the Python model recipe's scratch space are never linted.
		ignores: ['dist/**', 'out/**', 'node_modules/**', 'native/build/**', 'models/recipe/work/**', '.test-output/**', 'test-output/**', 'test/fixtures/**'],
	},
	js.configs.recommended,
	{
		files: ['**/*.ts'],
		extends: [...tseslint.configs.strictTypeChecked, ...tseslint.configs.stylisticTypeChecked],
		languageOptions: {
			parserOptions: {
				projectService: true,
				tsconfigRootDir: import.meta.dirname,
			},
		},
		rules: {
			// `_`-prefixed parameters are the documented way to say "required by the interface, unused here".
			'@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
			// Template literals with numbers are everywhere in timing/log output and are not a bug source.
			'@typescript-eslint/restrict-template-expressions': ['error', { allowNumber: true }],
			// The sidecar is a CLI: stdout/stderr are its user interface, so console is allowed there, not elsewhere.
			'no-console': 'error',
		},
	},
	{
		files: ['sidecar/src/cli/**/*.ts', 'bench/**/*.ts'],
		rules: { 'no-console': 'off' },
	},
	{
		files: ['**/*.js', '**/*.mjs', '**/*.cjs'],
		languageOptions: { globals: { ...globals.node } },
		rules: { 'no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }] },
	},
);

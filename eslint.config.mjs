// Lint: typescript-eslint's recommended rules, prettier for the layout (eslint-config-prettier turns
// off what would fight it), and the layering of docs/architecture.md as import rules.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import prettier from 'eslint-config-prettier';

/** What nodes/core may not import, as seen from a file `depth` folders below nodes/core. */
const families = ['shared', 'devices', 'convert', 'storage', 'events', 'webhooks', 'amqp', 'api', 'pull', 'federation', 'ftp', 'xmpp', 'ops', 'plugins'];
const outsideCore = (depth) => {
  const up = '../'.repeat(depth + 1);
  return ['node-red', ...families.map((f) => `${up}${f}/*`), `${up}../launcher/*`, `${up}../settings`];
};
const coreRule = (depth) => ({
  files: [`nodes/core/${'*/'.repeat(depth)}*.ts`],
  rules: {
    'no-restricted-imports': [
      'error',
      {
        patterns: [
          { group: outsideCore(depth), message: 'nodes/core is framework-free: it imports only Node, npm packages and nodes/core (docs/architecture.md)' },
        ],
      },
    ],
  },
});

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'examples/**', 'flows/**', 'nodes/**/*.html', '**/*.js', '!scripts/**/*.js'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  prettier,
  {
    languageOptions: { ecmaVersion: 2022, sourceType: 'module' },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
      // Node-RED loads nodes with require(); `export =` and require() of optional modules are how.
      '@typescript-eslint/no-require-imports': 'off',
      // `const node = this` is how a Node-RED node constructor names itself for its handlers.
      '@typescript-eslint/no-this-alias': ['error', { allowedNames: ['node'] }],
      // Codecs and protocols check for control characters on purpose (XML 1.0, NUL in names).
      'no-control-regex': 'off',
    },
  },
  {
    // Tests, benchmarks and tools poke at loosely typed things (Node-RED's RED, the browser's window).
    files: ['test/**/*.ts', 'bench/**/*.ts', 'tools/**/*.ts'],
    rules: { '@typescript-eslint/no-explicit-any': 'off' },
  },
  coreRule(0),
  coreRule(1),
  coreRule(2),
  {
    files: ['nodes/shared/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: [
                '../devices/*',
                '../convert/*',
                '../storage/*',
                '../events/*',
                '../webhooks/*',
                '../amqp/*',
                '../api/*',
                '../pull/*',
                '../federation/*',
                '../ftp/*',
                '../xmpp/*',
                '../../launcher/*',
                '../../settings',
              ],
              message: 'nodes/shared imports no node family and no launcher code (docs/architecture.md)',
            },
          ],
        },
      ],
    },
  },
  {
    files: ['nodes/*/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        { patterns: [{ group: ['../../launcher/*', '../../settings'], message: 'the palette package carries no launcher code (docs/architecture.md)' }] },
      ],
    },
  },
  {
    files: ['scripts/**/*.js'],
    languageOptions: {
      sourceType: 'commonjs',
      globals: { require: 'readonly', module: 'writable', process: 'readonly', __dirname: 'readonly', console: 'readonly' },
    },
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
);

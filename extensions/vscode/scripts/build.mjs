// Bundles src/extension.ts into dist/extension.js (esbuild, one CommonJS
// file, `vscode` left to the host) and copies the config schema from the
// repository (schema/doppel.schema.json) into schema/ for jsonValidation.
//   node scripts/build.mjs [--production]
import * as esbuild from 'esbuild';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const repo = path.resolve(here, '..', '..');
const production = process.argv.includes('--production');

await esbuild.build({
  entryPoints: [path.join(here, 'src', 'extension.ts')],
  outfile: path.join(here, 'dist', 'extension.js'),
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node20',
  external: ['vscode'],
  sourcemap: production ? false : 'linked',
  minify: production,
  logLevel: 'warning',
});

fs.mkdirSync(path.join(here, 'schema'), { recursive: true });
fs.copyFileSync(path.join(repo, 'schema', 'doppel.schema.json'), path.join(here, 'schema', 'doppel.schema.json'));
console.log(`built dist/extension.js${production ? ' (production)' : ''} and schema/doppel.schema.json`);

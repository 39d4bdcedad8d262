// Packages the extension as doppel-<version>.vsix with the helper inside:
// bin/doppel and bin/libdoppel.so are copied from the repository's bin/
// (`make doppel shim`), or from $DOPPEL_BIN_DIR.
//   node scripts/package.mjs [--out FILE]
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const repo = path.resolve(here, '..', '..');
const from = process.env.DOPPEL_BIN_DIR || path.join(repo, 'bin');
const pkg = JSON.parse(fs.readFileSync(path.join(here, 'package.json'), 'utf8'));
const outIdx = process.argv.indexOf('--out');
const out = outIdx > 0 ? path.resolve(process.argv[outIdx + 1]) : path.join(here, `doppel-${pkg.version}.vsix`);

fs.mkdirSync(path.join(here, 'bin'), { recursive: true });
for (const [name, mode] of [['doppel', 0o755], ['libdoppel.so', 0o755]]) {
  const src = path.join(from, name);
  if (!fs.existsSync(src)) {
    console.error(`package: ${src} is missing: run \`make doppel shim\` in the repository (or set DOPPEL_BIN_DIR)`);
    process.exit(1);
  }
  const dst = path.join(here, 'bin', name);
  fs.copyFileSync(src, dst);
  fs.chmodSync(dst, mode);
}
if (!fs.existsSync(path.join(here, 'dist', 'extension.js'))) {
  console.error('package: dist/extension.js is missing: run node scripts/build.mjs first');
  process.exit(1);
}
const vsce = path.join(here, 'node_modules', '@vscode', 'vsce', 'vsce');
execFileSync(process.execPath, [vsce, 'package', '--no-dependencies', '--skip-license', '--allow-missing-repository', '--out', out], {
  cwd: here,
  stdio: 'inherit',
});
console.log(`packaged ${out}`);

// dist/bundle/: the operator, the webhook and the CLI in one ES module with their production
// dependencies (esbuild, from tsc's output in dist/), the commands the CLI loads on demand in
// chunks of their own, sigil/mtls in a file of its own, and the licenses of the packages bundled
// (THIRD-PARTY-LICENSES). The image and the chart run dist/bundle/sigil.mjs. One module instead
// of some 250 files saves the module loader's records, paths and package.json reads, and the
// comments and whitespace of every source kept in the heap: about 2.5 MiB of the operator's
// RSS at rest (make bench-compare ONLY=sigil, 62.5 against 60.0 MiB). Identifiers are not
// minified, so stack traces stay readable.
import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { build } from 'esbuild';

const root = resolve(import.meta.dirname, '..');
const outdir = join(root, 'dist', 'bundle');
rmSync(outdir, { recursive: true, force: true });
/** What both outputs share: one ES module for Node 24, identifiers left as they are. */
const common = {
  // The metafile's input paths are relative to this, and read below.
  absWorkingDir: root,
  bundle: true,
  format: 'esm',
  platform: 'node',
  target: 'node24',
  minifyWhitespace: true,
  minifySyntax: true,
  logLevel: 'warning',
} as const;
const result = await build({
  ...common,
  entryPoints: { sigil: join(root, 'dist', 'cli', 'main.js') },
  outdir,
  splitting: true,
  outExtension: { '.js': '.mjs' },
  chunkNames: 'chunks/[name]-[hash]',
  legalComments: 'external',
  // The CommonJS dependencies (winston, prom-client) call require() for Node's built-in modules.
  banner: {
    js: "import { createRequire as __sigilCreateRequire } from 'node:module'; const require = __sigilCreateRequire(import.meta.url);",
  },
  metafile: true,
});
const bytes = Object.values(result.metafile.outputs).reduce((n, o) => n + o.bytes, 0);
console.log(`dist/bundle/sigil.mjs and its chunks: ${(bytes / 2 ** 20).toFixed(1)} MiB`);

// Each bundled package's license, as its LICENSE file says it (the image carries no node_modules).
const packages = new Set<string>();
for (const input of Object.keys(result.metafile.inputs)) {
  const at = input.lastIndexOf('node_modules/');
  if (at < 0) continue;
  const rest = input.slice(at + 'node_modules/'.length).split('/');
  packages.add(
    `${input.slice(0, at)}node_modules/${rest.slice(0, rest[0]!.startsWith('@') ? 2 : 1).join('/')}`,
  );
}
const notices = [...packages].sort().map((dir) => {
  const pkg = JSON.parse(readFileSync(join(root, dir, 'package.json'), 'utf8')) as {
    name: string;
    version: string;
    license?: string;
  };
  const file = readdirSync(join(root, dir)).find((f) => /^(un)?(licen[sc]e|copying)(\.|$)/i.test(f));
  if (!file)
    throw new Error(`${pkg.name}@${pkg.version} (${dir}) has no LICENSE file to carry into the bundle`);
  return `${pkg.name}@${pkg.version} (${pkg.license ?? 'see below'})\n\n${readFileSync(join(root, dir, file), 'utf8').trim()}\n`;
});
writeFileSync(join(outdir, 'THIRD-PARTY-LICENSES'), notices.join(`\n${'-'.repeat(78)}\n\n`));
console.log(`dist/bundle/THIRD-PARTY-LICENSES: ${packages.size} packages`);

// `sigil/mtls`, for services that run on the image (examples/mtls): one file with no imports but
// Node's, which the image puts where package.json's exports name it (dist/lib/mtls/index.js).
await build({
  ...common,
  entryPoints: [join(root, 'dist', 'lib', 'mtls', 'index.js')],
  outfile: join(outdir, 'mtls.mjs'),
});

// dist/bundle/: the operator, the webhook and the CLI in one ES module with their production
// dependencies (esbuild, from tsc's output in dist/), the commands the CLI loads on demand in
// chunks of their own, and sigil/mtls in a file of its own. The image and the chart run
// dist/bundle/sigil.mjs. One module instead of
// some 250 files saves the module loader's records, paths and package.json reads, and the
// comments and whitespace of every source kept in the heap: 62.4 against 59.9 MiB for the
// operator at rest (make bench-compare's idle figure, three runs each). Names are kept, so
// stack traces read as the source does.
import { rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { build } from 'esbuild';

const root = resolve(import.meta.dirname, '..');
const outdir = join(root, 'dist', 'bundle');
rmSync(outdir, { recursive: true, force: true });
const result = await build({
  entryPoints: { sigil: join(root, 'dist', 'cli', 'main.js') },
  outdir,
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node24',
  outExtension: { '.js': '.mjs' },
  chunkNames: 'chunks/[name]-[hash]',
  minifyWhitespace: true,
  minifySyntax: true,
  legalComments: 'external',
  // The CommonJS dependencies (winston, prom-client) call require() for Node's built-in modules.
  banner: {
    js: "import { createRequire as __sigilCreateRequire } from 'node:module'; const require = __sigilCreateRequire(import.meta.url);",
  },
  logLevel: 'warning',
  metafile: true,
});
const bytes = Object.values(result.metafile.outputs).reduce((n, o) => n + o.bytes, 0);
console.log(`dist/bundle/sigil.mjs and its chunks: ${(bytes / 2 ** 20).toFixed(1)} MiB`);

// `sigil/mtls`, for services that run on the image (examples/mtls): one file with no imports but
// Node's, which the image puts where package.json's exports name it (dist/lib/mtls/index.js).
await build({
  entryPoints: [join(root, 'dist', 'lib', 'mtls', 'index.js')],
  outfile: join(outdir, 'mtls.mjs'),
  bundle: true,
  format: 'esm',
  platform: 'node',
  target: 'node24',
  minifyWhitespace: true,
  minifySyntax: true,
  logLevel: 'warning',
});

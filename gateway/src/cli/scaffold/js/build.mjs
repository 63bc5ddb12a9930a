// Build policy.js into a Warden policy component with ComponentizeJS.
//
//   node build.mjs OUT.wasm
//
// Called by build.sh, which installs the pinned ComponentizeJS first: into node_modules/ here,
// or into $WARDEN_JS_TOOLCHAIN/node_modules when that is set (an install shared by projects).

import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const [out] = process.argv.slice(2);
if (!out) {
  console.error('usage: node build.mjs OUT.wasm');
  process.exit(2);
}

const { componentize } = await importFrom(
  process.env.WARDEN_JS_TOOLCHAIN || here,
  '@bytecodealliance/componentize-js',
);
const started = Date.now();
const { component } = await componentize({
  sourcePath: join(here, 'policy.js'),
  witPath: join(here, 'wit'),
  worldName: 'policy',
  // A policy needs no WASI: leave out every WASI-backed engine feature, so the component
  // imports only the world's `log` (the gateway does not link `wasi:http` at all).
  disableFeatures: ['stdio', 'random', 'clocks', 'http', 'fetch-event'],
});

const target = resolve(out);
await mkdir(dirname(target), { recursive: true });
// Write then rename, so a gateway watching the directory never loads a half-written file.
const tmp = join(dirname(target), `.${basename(target)}.tmp`);
await writeFile(tmp, component);
await rename(tmp, target);
console.log(
  `built ${target} (${component.length} bytes, ${((Date.now() - started) / 1000).toFixed(1)} s)`,
);

/** Import package `name` from `dir`/node_modules (ESM resolution only looks next to this file). */
async function importFrom(dir, name) {
  const pkgDir = join(dir, 'node_modules', ...name.split('/'));
  let pkg;
  try {
    pkg = JSON.parse(await readFile(join(pkgDir, 'package.json'), 'utf8'));
  } catch (e) {
    console.error(`${name} is not installed in ${dir} (run ./build.sh): ${e.message}`);
    process.exit(1);
  }
  const exp = pkg.exports?.['.'] ?? pkg.exports;
  const entry = typeof exp === 'string' ? exp : (exp?.import ?? exp?.default ?? pkg.main);
  return import(pathToFileURL(join(pkgDir, entry ?? 'index.js')).href);
}

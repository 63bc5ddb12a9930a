// Build a JavaScript policy into a Warden policy component with ComponentizeJS.
//
//   node build.mjs [--features stdio,random,clocks] OUT.wasm [SOURCE.js]
//
// SOURCE defaults to policy.js next to this file. `--features` keeps some of ComponentizeJS's
// WASI-backed engine features (default: none, a component importing only the world's `log`);
// the gateway links WASI p2 with nothing granted, so `stdio`, `random` and `clocks` load (and
// see no output, fixed bytes and a clock frozen at 0), while `http` / `fetch-event` would import
// `wasi:http`, which the gateway does not provide: such a component fails to load.
//
// Called by build.sh, which installs the pinned ComponentizeJS first. The `jco componentize`
// CLI is not used: its WASI shim gets no filesystem on this machine image (os error 44).

import { componentize } from '@bytecodealliance/componentize-js';
import { mkdir, rename, writeFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const ALL_FEATURES = ['stdio', 'random', 'clocks', 'http', 'fetch-event'];
const args = process.argv.slice(2);
let keep = [];
if (args[0] === '--features') {
  keep = (args[1] ?? '').split(',').filter((f) => f !== '');
  args.splice(0, 2);
}
const [out, source = join(here, 'policy.js')] = args;
const unknown = keep.filter((f) => !ALL_FEATURES.includes(f));
if (!out || unknown.length > 0) {
  if (unknown.length > 0) console.error(`unknown feature(s): ${unknown.join(', ')}`);
  console.error('usage: node build.mjs [--features stdio,random,clocks] OUT.wasm [SOURCE.js]');
  process.exit(2);
}

const started = Date.now();
const { component, imports } = await componentize({
  sourcePath: resolve(source),
  witPath: join(here, '..', '..', 'wit'),
  worldName: 'policy',
  // A policy needs no WASI at all: by default leave every engine feature out, so the component
  // imports only the world's `log` (no stdio, clocks, randomness or HTTP for the host to stub
  // or deny). The price: an uncaught `Error` traps instead of printing (the gateway turns a
  // trap into a deny anyway), `Date.now()` is the build time, `Math.random()` a fixed sequence.
  disableFeatures: ALL_FEATURES.filter((f) => !keep.includes(f)),
});

const target = resolve(out);
await mkdir(dirname(target), { recursive: true });
// Write then rename, so a gateway watching the directory never loads a half-written file.
const tmp = join(dirname(target), `.${basename(target)}.tmp`);
await writeFile(tmp, component);
await rename(tmp, target);
const used = imports.map((i) => (Array.isArray(i) ? i.join('#') : String(i))).join(', ');
console.log(
  `built ${target} (${component.length} bytes, ${((Date.now() - started) / 1000).toFixed(1)} s; ` +
    `imports: ${used || 'none'})`,
);

// A hostile JavaScript policy for gateway/tests/lang_js.rs — never install it. Its config names
// one attempt (`NAME` or `NAME:PORT`); `check` makes that attempt and answers
// deny("NAME=ok:VALUE") or deny("NAME=err:MESSAGE"). Attempts the engine cannot even start
// (module loading, fetch) trap instead, which the gateway also turns into a deny. `loop` never
// returns, so only the call deadline stops it.

import log from 'log';

const ATTEMPTS = {
  // Files: CommonJS, a Node built-in, a module loaded from a file path, a file: URL.
  require: () => globalThis.require('fs').readFileSync('/etc/passwd', 'utf8'),
  'node-fs': async () => (await import('node:fs')).readFileSync('/etc/passwd', 'utf8'),
  'import-file': async () => JSON.stringify(await import('/etc/passwd')),
  'fetch-file': async () => (await globalThis.fetch('file:///etc/passwd')).text(),
  // Sockets, to a listener the test watches.
  'fetch-tcp': async (port) => (await globalThis.fetch(`http://127.0.0.1:${port}/`)).status,
  websocket: (port) => new globalThis.WebSocket(`ws://127.0.0.1:${port}/`),
  // The environment, Node's and Deno's way.
  'process-env': () => JSON.stringify(globalThis.process.env),
  'deno-env': () => JSON.stringify(globalThis.Deno.env.toObject()),
  // The clock: what the host's frozen clock says (when built with the `clocks` feature).
  clock: () => Date.now(),
};

let attempt = '';
let port = 0;

export function init(config) {
  const [name, p = '0'] = config.split(':');
  if (name !== 'loop' && !(name in ATTEMPTS)) {
    throw `probe: unknown attempt \`${name}\` (use loop, ${Object.keys(ATTEMPTS).join(', ')})`;
  }
  attempt = name;
  port = Number(p);
}

export async function check(_session, _command) {
  if (attempt === 'loop') {
    for (;;) {}
  }
  let report;
  try {
    report = `${attempt}=ok:${String(await ATTEMPTS[attempt](port)).slice(0, 200)}`;
  } catch (e) {
    report = `${attempt}=err:${String(e).slice(0, 200)}`;
  }
  log(`probe: ${report}`);
  return { tag: 'deny', val: report };
}

export function maskRows(_session, _columns, _rows) {
  return [];
}

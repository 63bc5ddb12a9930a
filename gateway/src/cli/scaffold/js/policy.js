// __POLICY_NAME__: a Warden policy in JavaScript (ComponentizeJS).
//
// Edit `check` (and `maskRows`) below; keep them pure functions of their inputs. As written:
// SQL `DROP` is denied, everything else (other SQL, shell commands, HTTP requests) is allowed,
// and result rows are never changed. Build with ./build.sh; test with
// `warden policy test __POLICY_NAME__.wasm cases.toml`.
//
// Binding conventions (ComponentizeJS / jco): WIT names become camelCase (`mask-rows` ->
// `maskRows`, `client-addr` -> `clientAddr`, `api-group` -> `apiGroup`); variants are
// `{ tag, val }` (`{ tag: 'deny', val: 'why' }`, tags keep their WIT spelling:
// 'require-approval'); `option<T>` is the value or `undefined`; `list<u8>` is a Uint8Array;
// `result<_, string>` is ok when the function returns and err when it throws a *string* (a
// thrown `Error` traps, which the gateway turns into a deny). The world's `log` import is
// `import log from 'log';`.
//
// The component runs in the gateway's sandbox with no WASI at all: `console.log` goes nowhere,
// `Date.now()` is the build time, `Math.random()` a fixed sequence, timers trap. It carries the
// SpiderMonkey engine: about 12 MB, and about 9 MiB of memory before the first call; HTTP
// request bodies are copied into the JS heap on every call. Give it room in warden.toml:
// [policy.modules.__POLICY_NAME__] memory_limit = "24MiB".

const ALLOW = { tag: 'allow' };
const deny = (reason) => ({ tag: 'deny', val: reason });

/** Statement kinds refused outright (`sql.kind` is lower-case: select, insert, drop, ...). */
const DENIED_KINDS = new Set(['drop']);

/**
 * The config from warden.toml (a TOML table arrives as JSON). Parse it here and keep the result
 * in module state (one instance serves one config); throw a string to refuse it.
 */
export function init(config) {
  if (config.trim() !== '') {
    throw '__POLICY_NAME__ takes no config';
  }
}

/** Decide one command. */
export function check(_session, command) {
  if (command.tag === 'sql' && DENIED_KINDS.has(command.val.kind)) {
    return deny(`${command.val.kind.toUpperCase()} is not allowed here`);
  }
  return ALLOW;
}

/**
 * Called only for commands this policy answered `{ tag: 'mask' }`: return the cells to change,
 * `{ row, column, value, rule }` (`value` undefined makes the cell NULL).
 */
export function maskRows(_session, _columns, _rows) {
  return [];
}

// kube-guard-js: a Warden policy, in JavaScript, for Kubernetes API and plain HTTP targets.
//
// Implements the `policy` world of wit/policy.wit (warden:policy@0.4.0); build.mjs turns this
// module into a component with ComponentizeJS (SpiderMonkey). Rules, for `http` commands:
//
//   with Kubernetes request info (`kube`):
//     - deny deleting namespaces (`delete` / `deletecollection` on `namespaces`);
//     - deny reading secrets (`get` / `list` / `watch` on `secrets`) unless the namespace is in
//       `secret_namespaces` (a cluster-wide read, namespace "", is never in it);
//     - require approval for the `exec`, `attach` and `portforward` subresources of `pods`;
//     - allow everything else.
//   without (plain HTTP):
//     - deny DELETE (also a method-override header saying DELETE) on a path at or under a
//       prefix in `protected_paths` (compared by whole segments, ignoring case, after resolving
//       `.`, `..` and repeated slashes);
//     - allow everything else.
// SQL and shell commands are allowed: they are not this policy's business.
//
// Config (warden.toml table, arrives as JSON; every key optional, unknown keys refused):
//   { "secret_namespaces": ["dev"], "protected_paths": ["/admin"] }
//
// Binding conventions (ComponentizeJS / jco): WIT names become camelCase (`mask-rows` ->
// `maskRows`, `api-group` -> `apiGroup`); variants are `{ tag, val }`; `option<T>` is the value
// or `undefined`; `result<_, string>` is ok when the function returns and err when it throws a
// string (a thrown `Error` object is re-thrown by the bindings and traps instead). The world's
// top-level `log` import is the default export of the module `log`.

import log from 'log';

const CONFIG_KEYS = ['secret_namespaces', 'protected_paths'];
const SECRET_READ_VERBS = new Set(['get', 'list', 'watch']);
const NAMESPACE_DELETE_VERBS = new Set(['delete', 'deletecollection']);
const APPROVAL_SUBRESOURCES = new Set(['exec', 'attach', 'portforward']);
// Headers some frameworks honour to turn a POST into another method.
const OVERRIDE_HEADERS = new Set(['x-http-method-override', 'x-http-method', 'x-method-override']);

const ALLOW = { tag: 'allow' };
const deny = (reason) => ({ tag: 'deny', val: reason });
const approval = (reason) => ({ tag: 'require-approval', val: reason });

// Set by `init`; one instance serves one config.
let secretNamespaces = new Set();
let protectedPaths = [];

/** Parse and check the config; an error rejects the module for this config. */
export function init(config) {
  try {
    configure(config);
  } catch (e) {
    // Only a thrown string becomes `err`; anything else would trap without a message.
    throw typeof e === 'string' ? e : `kube-guard-js: cannot apply config: ${e}`;
  }
}

function configure(config) {
  let parsed = {};
  if (config.trim() !== '') {
    try {
      parsed = JSON.parse(config);
    } catch (e) {
      throw `kube-guard-js: config is not JSON: ${e.message}`;
    }
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw 'kube-guard-js: config must be a table, e.g. { secret_namespaces = ["dev"], protected_paths = ["/admin"] }';
  }
  for (const key of Object.keys(parsed)) {
    if (!CONFIG_KEYS.includes(key)) {
      throw `kube-guard-js: unknown config key \`${key}\` (known keys: ${CONFIG_KEYS.join(', ')})`;
    }
  }
  const namespaces = stringList(parsed, 'secret_namespaces');
  for (const ns of namespaces) {
    if (ns === '') {
      throw 'kube-guard-js: `secret_namespaces` entries must not be empty (a cluster-wide secret read is never allowed)';
    }
  }
  const paths = stringList(parsed, 'protected_paths').map((p) => {
    if (!p.startsWith('/')) {
      throw `kube-guard-js: \`protected_paths\` entry \`${p}\` must start with \`/\``;
    }
    return normalizePath(p);
  });
  secretNamespaces = new Set(namespaces);
  protectedPaths = paths;
  log(
    `kube-guard-js: secrets readable in [${namespaces.join(', ')}]; ` +
      `DELETE refused under [${paths.join(', ')}]`,
  );
}

/** Decide one command. */
export function check(_session, command) {
  if (command.tag !== 'http') {
    return ALLOW;
  }
  const http = command.val;
  try {
    return http.kube ? checkKube(http.kube) : checkPlainHttp(http);
  } catch (e) {
    // A bug here would trap (also a deny, but without a reason); say what went wrong instead.
    return deny(`kube-guard-js: internal error: ${e}`);
  }
}

/** This policy never answers `mask`, so it never has cells to change. */
export function maskRows(_session, _columns, _rows) {
  return [];
}

function checkKube(kube) {
  const verb = kube.verb.toLowerCase();
  const resource = kube.resource.toLowerCase();
  const subresource = kube.subresource.toLowerCase();
  if (resource === 'namespaces' && subresource === '' && NAMESPACE_DELETE_VERBS.has(verb)) {
    // For namespace objects the request info names the namespace in `name` (and `namespace`).
    const which = kube.name || kube.namespace;
    return deny(
      which
        ? `deleting namespace \`${which}\` is not allowed`
        : 'deleting namespaces is not allowed',
    );
  }
  if (resource === 'secrets' && SECRET_READ_VERBS.has(verb)) {
    if (kube.namespace !== '' && secretNamespaces.has(kube.namespace)) {
      return ALLOW;
    }
    const where =
      kube.namespace === '' ? 'across all namespaces' : `in namespace \`${kube.namespace}\``;
    const allowed =
      secretNamespaces.size === 0
        ? 'no namespace is allowed'
        : `allowed: ${[...secretNamespaces].join(', ')}`;
    return deny(`reading secrets (${verb}) ${where} is not allowed (${allowed})`);
  }
  if (resource === 'pods' && APPROVAL_SUBRESOURCES.has(subresource)) {
    const pod = kube.name ? `${kube.namespace}/${kube.name}` : kube.namespace;
    return approval(`\`${subresource}\` into pod \`${pod}\` needs approval`);
  }
  return ALLOW;
}

function checkPlainHttp(http) {
  if (protectedPaths.length === 0 || !isDelete(http)) {
    return ALLOW;
  }
  const path = normalizePath(http.path);
  for (const prefix of protectedPaths) {
    if (under(path, prefix)) {
      return deny(`DELETE under protected path \`${prefix}\` is not allowed (${http.path})`);
    }
  }
  return ALLOW;
}

/** DELETE, or a POST that asks the upstream to treat it as one (method-override headers). */
function isDelete(http) {
  if (http.method.toUpperCase() === 'DELETE') return true;
  return http.headers.some(
    ([name, value]) => OVERRIDE_HEADERS.has(name) && value.trim().toUpperCase() === 'DELETE',
  );
}

/** Whether `path` is `prefix` or below it, whole segments only (`/admin` covers `/admin/x`, not `/administrator`). */
function under(path, prefix) {
  return prefix === '/' || path === prefix || path.startsWith(`${prefix}/`);
}

/**
 * Lower-cased, with empty and `.` segments dropped and `..` resolved, without a trailing slash:
 * an upstream that normalises `//Admin/./x/../users/` must not slip past `/admin`. Lower-casing
 * can only widen a match (more denies), never narrow it.
 */
function normalizePath(path) {
  const out = [];
  for (const seg of path.toLowerCase().split('/')) {
    if (seg === '' || seg === '.') continue;
    if (seg === '..') out.pop();
    else out.push(seg);
  }
  return `/${out.join('/')}`;
}

function stringList(config, key) {
  const value = config[key];
  if (value === undefined) return [];
  if (!Array.isArray(value) || value.some((v) => typeof v !== 'string')) {
    throw `kube-guard-js: \`${key}\` must be a list of strings`;
  }
  return value;
}

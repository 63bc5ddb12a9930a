#!/usr/bin/env node
// Client matrix, node-postgres (pg 8): text results, binary results (`binary: true` query
// config; only the text-like columns, see BINARY_TYPE_COLUMNS for why), named prepared
// statements run 7 times in both formats, a transaction, a multi-row insert and a batch of
// inserts through one named statement.
//
// Usage: node tests/clients/node_pg.js --dsn DSN --mode direct|masked [--denied-sql SQL]
// pg is loaded from target/clients/node (tests/clients/install.sh) unless it resolves already.
'use strict';

const path = require('path');
const pg = (() => {
  try {
    return require('pg');
  } catch (_) {
    return require(path.resolve(__dirname, '../../target/clients/node/node_modules/pg'));
  }
})();

const FAMILY = 'node-pg';
const SCRATCH = 'matrix_scratch_node_pg';
const REPEAT = 7;
const PANS = ['4111111111111111', '5500005555555559'];

// --- command line and DSN --------------------------------------------------------------------

function parseArgs(argv) {
  const args = { mode: null, dsn: null, deniedSql: null };
  for (let i = 0; i < argv.length; i++) {
    const next = () => {
      if (i + 1 >= argv.length) usage(`${argv[i]} needs a value`);
      return argv[++i];
    };
    if (argv[i] === '--dsn') args.dsn = next();
    else if (argv[i] === '--mode') args.mode = next();
    else if (argv[i] === '--denied-sql') args.deniedSql = next();
    else usage(`unknown argument ${argv[i]}`);
  }
  if (!args.dsn || !['direct', 'masked'].includes(args.mode)) usage('--dsn and --mode are required');
  return args;
}

function usage(msg) {
  console.error(`${msg}\nusage: node_pg.js --dsn DSN --mode direct|masked [--denied-sql SQL]`);
  process.exit(2);
}

// node-postgres reads URLs only; a key=value conninfo (libpq quoting) becomes a config object.
function clientConfig(dsn) {
  if (/^postgres(ql)?:\/\//.test(dsn)) return { connectionString: dsn };
  const kv = {};
  const re = /\s*([^=\s]+)\s*=\s*('((?:\\.|[^'])*)'|(?:\\.|\S)*)/gy;
  let m;
  while ((m = re.exec(dsn)) !== null && m[0] !== '') {
    const raw = m[3] !== undefined ? m[3] : m[2];
    kv[m[1]] = raw.replace(/\\(.)/g, '$1');
  }
  const cfg = {};
  if (kv.host) cfg.host = kv.host;
  if (kv.hostaddr && !kv.host) cfg.host = kv.hostaddr;
  if (kv.port) cfg.port = Number(kv.port);
  if (kv.user) cfg.user = kv.user;
  if (kv.password !== undefined) cfg.password = kv.password;
  if (kv.dbname) cfg.database = kv.dbname;
  if (kv.sslmode && kv.sslmode !== 'disable') cfg.ssl = { rejectUnauthorized: false };
  return cfg;
}

// --- checking --------------------------------------------------------------------------------

class CheckFailed extends Error {}

let checks = 0;

function fail(msg) {
  throw new CheckFailed(msg);
}

function kind(v) {
  if (v === null || v === undefined) return 'null';
  if (Buffer.isBuffer(v)) return 'Buffer';
  if (v instanceof Date) return 'Date';
  if (Array.isArray(v)) return 'Array';
  if (typeof v === 'object') return v.constructor && v.constructor.name !== 'Object' ? v.constructor.name : 'object';
  return typeof v;
}

function show(v) {
  if (Buffer.isBuffer(v)) return `Buffer<${v.toString('hex')}>`;
  if (v instanceof Date) return `Date(${isNaN(v) ? 'invalid' : v.toISOString()})`;
  return JSON.stringify(v);
}

// null when `got` equals `want` with the same JavaScript type, element by element.
function mismatch(got, want, at = '') {
  const [kg, kw] = [kind(got), kind(want)];
  if (kg !== kw) return `${at}: got ${kg} ${show(got)}, want ${kw} ${show(want)}`;
  if (kw === 'Buffer') return got.equals(want) ? null : `${at}: got ${show(got)}, want ${show(want)}`;
  if (kw === 'Date') return got.getTime() === want.getTime() ? null : `${at}: got ${show(got)}, want ${show(want)}`;
  if (kw === 'Array') {
    if (got.length !== want.length) return `${at}: got ${show(got)}, want ${show(want)}`;
    for (let i = 0; i < want.length; i++) {
      const m = mismatch(got[i], want[i], `${at}[${i}]`);
      if (m) return m;
    }
    return null;
  }
  if (kw !== 'null' && typeof want === 'object') {
    const gk = Object.keys(got).sort();
    const wk = Object.keys(want).sort();
    if (gk.join() !== wk.join()) return `${at}: keys ${gk}, want ${wk} (${show(got)})`;
    for (const k of wk) {
      const m = mismatch(got[k], want[k], `${at}.${k}`);
      if (m) return m;
    }
    return null;
  }
  return got === want ? null : `${at}: got ${show(got)}, want ${show(want)}`;
}

function eq(what, got, want) {
  checks++;
  const m = mismatch(got, want);
  if (m) fail(`${what}${m}`);
}

function flatten(v) {
  if (v === null || v === undefined) return '';
  if (Buffer.isBuffer(v)) return v.toString('utf8');
  if (v instanceof Date) return isNaN(v) ? 'invalid date' : v.toISOString();
  if (Array.isArray(v)) return v.map(flatten).join(' ');
  if (typeof v === 'object') return Object.entries(v).map(([k, x]) => `${k}=${flatten(x)}`).join(' ');
  return String(v);
}

function noPans(what, rows) {
  checks++;
  const text = flatten(rows);
  for (const pan of PANS) {
    if (text.includes(pan)) fail(`${what}: clear PAN ${pan} in driver values: ${text.slice(0, 300)}`);
  }
}

function compareRows(what, rows, want, columns) {
  checks++;
  if (rows.length !== want.length) fail(`${what}: got ${rows.length} rows, want ${want.length}`);
  rows.forEach((row, i) => {
    checks++;
    const got = Object.keys(row);
    if (got.join() !== columns.join()) fail(`${what}: columns ${got}, want ${columns}`);
    for (const col of columns) eq(`${what} id=${want[i].id} ${col}`, row[col], want[i][col]);
  });
}

function compareCards(what, rows, mode, want, binary = false) {
  if (mode === 'masked') noPans(what, rows);
  compareRows(what, rows, want, binary ? BINARY_CARD_COLUMNS : CARD_COLUMNS);
}

function ok(variant) {
  console.log(`ok ${FAMILY} ${variant}: ${checks} checks`);
  checks = 0;
}

// --- expected values -------------------------------------------------------------------------

const TYPE_COLUMNS = ['id', 'c_int2', 'c_int4', 'c_int8', 'c_numeric', 'c_float4', 'c_float8',
  'c_bool', 'c_text', 'c_varchar', 'c_char', 'c_bytea', 'c_date', 'c_time', 'c_timestamp',
  'c_timestamptz', 'c_interval', 'c_uuid', 'c_inet', 'c_cidr', 'c_macaddr', 'c_json', 'c_jsonb',
  'c_text_arr', 'c_int4_arr'];
const CARD_COLUMNS = ['id', 'holder', 'pan', 'pan_spaced', 'pan_num', 'pan_dec', 'meta', 'pans',
  'nums', 'note', 'card_id', 'created'];
const SELECT_TYPES = `select ${TYPE_COLUMNS.join(', ')} from matrix_types order by id`;
const SELECT_CARDS = `select ${CARD_COLUMNS.join(', ')} from matrix_cards`;

// Text results, with pg-types' default parsers: int8 and numeric stay strings (no precision
// loss), date and timestamp become local-time Dates (milliseconds only), time and the network
// types stay strings, interval is a PostgresInterval.
function typesText() {
  const row1 = {
    id: 1, c_int2: -32768, c_int4: 2147483647, c_int8: '12345678901234567',
    c_numeric: '12345678.9012', c_float4: 1.5, c_float8: -1234.5678, c_bool: true,
    c_text: 'héllo 日本 🎉', c_varchar: 'varchar é', c_char: 'ab   ',
    c_bytea: Buffer.from('deadbeef00ff', 'hex'), c_date: new Date(2024, 1, 29),
    c_time: '13:45:30.123456', c_timestamp: new Date(2024, 1, 29, 13, 45, 30, 123),
    c_timestamptz: new Date(Date.UTC(2024, 1, 29, 13, 45, 30, 123)),
    c_interval: { days: 3, hours: 4, minutes: 5, seconds: 6, milliseconds: 789 },
    c_uuid: 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', c_inet: '203.0.113.7/24',
    c_cidr: '198.51.100.0/24', c_macaddr: '08:00:2b:01:02:03',
    c_json: { a: [1, 2.5, 'x'], b: null }, c_jsonb: { k: '日本', n: 42, nested: { t: true } },
    c_text_arr: ['a', 'b c', 'é', null], c_int4_arr: [1, 2, 3],
  };
  const row2 = Object.fromEntries(TYPE_COLUMNS.map((c) => [c, null]));
  Object.assign(row2, { id: 2, c_int2: 0, c_bool: false, c_text: '', c_bytea: Buffer.alloc(0), c_jsonb: [], c_text_arr: [] });
  return [row1, row2];
}

// Binary results. node-postgres 8 cannot receive binary values intact: pg-protocol decodes
// every DataRow field as UTF-8 text ("Binary mode not supported yet") and pg turns that string
// back into a Buffer for the binary parser, so every byte sequence that is not valid UTF-8
// becomes U+FFFD (int2 -32768 arrives as -4161, a uuid or a timestamp is garbled). What it
// carries intact is the types whose binary form is text (text, varchar, char, json, jsonb
// after its version byte), bool, small int4 and int4[] and text[] without NULL elements: the
// binary variant reads those columns only. pg-types has no binary parser for varchar, char,
// json and jsonb, so BINARY_DECODERS supplies them.
const BINARY_TYPE_COLUMNS = ['id', 'c_bool', 'c_text', 'c_varchar', 'c_char', 'c_json', 'c_jsonb', 'c_int4_arr'];
const BINARY_CARD_COLUMNS = ['id', 'holder', 'pan', 'pan_spaced', 'meta', 'pans', 'note'];

const BINARY_DECODERS = {
  1042: (b) => b.toString('utf8'), // bpchar
  1043: (b) => b.toString('utf8'), // varchar
  114: (b) => JSON.parse(b.toString('utf8')), // json: the text
  3802: (b) => { // jsonb: a version byte, then the text
    if (b[0] !== 1) fail(`jsonb binary version ${b[0]}, want 1`);
    return JSON.parse(b.subarray(1).toString('utf8'));
  },
};

const binaryTypes = {
  getTypeParser(oid, format) {
    if (format === 'binary' && BINARY_DECODERS[oid]) return BINARY_DECODERS[oid];
    return pg.types.getTypeParser(oid, format);
  },
};

function pick(rows, columns) {
  return rows.map((r) => Object.fromEntries(columns.map((c) => [c, r[c]])));
}

// Every digit but the last four starred, separators kept.
function mask(pan) {
  return pan.slice(0, -4).replace(/[0-9]/g, '*') + pan.slice(-4);
}

// matrix_cards as node-postgres returns it in text.
function cards(mode) {
  const masked = mode === 'masked';
  const text = (p) => (masked ? mask(p) : p);
  const digits = (p) => (masked ? String(Number(p.slice(-4))) : p);
  const int8 = (p) => digits(p); // bigint and numeric: strings, so no precision is lost
  const spaced = (p) => text(p.match(/.{4}/g).join(' '));
  const meta = (p, brand) => ({ pan: text(p), n: Number(digits(p)), brand });
  const row = (id, p, holder, brand, cardId, created) => ({
    id, holder, pan: text(p), pan_spaced: spaced(p), pan_num: int8(p), pan_dec: int8(p),
    meta: meta(p, brand), pans: PANS.map(text), nums: PANS.map(int8), note: meta(p, brand),
    card_id: cardId, created,
  });
  return [
    row(1, PANS[0], 'Ada Lovelace', 'visa', '00000000-0000-0000-0000-000000000000', new Date(Date.UTC(2024, 2, 1, 12))),
    row(2, PANS[1], 'Grace Hopper', 'mastercard', '6ba7b810-9dad-11d1-80b4-00c04fd430c8', new Date(Date.UTC(2024, 2, 2, 8, 30, 0, 500))),
    {
      id: 3, holder: 'No Card', pan: null, pan_spaced: null, pan_num: null, pan_dec: null,
      meta: { brand: null }, pans: [], nums: null, note: null,
      card_id: 'f47ac10b-58cc-4372-a567-0e02b2c3d479', created: new Date(Date.UTC(2024, 2, 3)),
    },
  ];
}

// PostgresInterval is a class; compare its own fields as a plain object.
function plain(rows) {
  return rows.map((r) => Object.fromEntries(Object.entries(r).map(([k, v]) => [k,
    v && v.constructor && v.constructor.name === 'PostgresInterval' ? { ...v } : v])));
}

// --- the workload ----------------------------------------------------------------------------

async function workload(client) {
  await client.query(`drop table if exists ${SCRATCH}`);
  await client.query(`create table ${SCRATCH} (id int primary key, label text, amount numeric(10,2))`);

  const r = await client.query('select holder, card_id from matrix_cards where id = $1', [3]);
  eq('parameterised query', r.rows, [{ holder: 'No Card', card_id: 'f47ac10b-58cc-4372-a567-0e02b2c3d479' }]);

  const insert = `insert into ${SCRATCH} values ($1, $2, $3)`;
  await client.query('begin');
  await client.query(insert, [1, 'committed', '1.50']);
  await client.query('commit');
  await client.query('begin');
  await client.query(insert, [2, 'rolled back', '2.50']);
  await client.query('rollback');
  const t = await client.query(`select id, label from ${SCRATCH} order by id`);
  eq('transaction: committed row kept, rolled-back row gone', t.rows, [{ id: 1, label: 'committed' }]);

  // node-postgres has no COPY of its own (pg-copy-streams adds it): one multi-row insert,
  // then a batch through a named statement inside a transaction.
  const values = [];
  const params = [];
  for (let i = 10; i < 60; i++) {
    values.push(`($${params.length + 1}, $${params.length + 2}, $${params.length + 3})`);
    params.push(i, `multi ${i}`, `${i}.25`);
  }
  await client.query(`insert into ${SCRATCH} values ${values.join(', ')}`, params);
  await client.query('begin');
  for (let i = 100; i < 150; i++) {
    await client.query({ name: 'matrix_scratch_insert', text: insert, values: [i, `batch ${i}`, `${i}.75`] });
  }
  await client.query('commit');
  const c = await client.query(`select count(*)::int as n, sum(amount)::text as total from ${SCRATCH}`);
  eq('multi-row insert + batch rows', c.rows, [{ n: 101, total: '8001.50' }]);
}

function selectTypes(binary) {
  return binary ? `select ${BINARY_TYPE_COLUMNS.join(', ')} from matrix_types order by id` : SELECT_TYPES;
}

function selectCards(binary) {
  return `select ${(binary ? BINARY_CARD_COLUMNS : CARD_COLUMNS).join(', ')} from matrix_cards`;
}

function typesWant(binary) {
  return binary ? pick(typesText(), BINARY_TYPE_COLUMNS) : typesText();
}

function cardsWant(mode, binary) {
  return binary ? pick(cards(mode), BINARY_CARD_COLUMNS) : cards(mode);
}

async function readAll(client, mode, binary) {
  const what = binary ? 'binary' : 'text';
  // Without parameters node-postgres sends a simple Query, whose results are always text:
  // queryMode 'extended' makes it Parse/Bind/Execute so that `binary` takes effect.
  const cfg = (text) => (binary ? { text, binary: true, queryMode: 'extended', types: binaryTypes } : { text });
  const types = await client.query(cfg(selectTypes(binary)));
  checkFormats(what, types, binary);
  compareRows(`${what} matrix_types`, plain(types.rows), typesWant(binary), binary ? BINARY_TYPE_COLUMNS : TYPE_COLUMNS);
  const rows = await client.query(cfg(`${selectCards(binary)} order by id`));
  checkFormats(what, rows, binary);
  compareCards(`${what} matrix_cards`, rows.rows, mode, cardsWant(mode, binary), binary);
}

// The server answers in the format asked for (a binary query that came back as text would
// check nothing new), and each column keeps its type: node-postgres returns bigint and numeric
// as strings, so only the type OID tells a bigint '1111' from a text '1111'.
function checkFormats(what, result, binary) {
  checks++;
  const want = binary ? 'binary' : 'text';
  const off = result.fields.filter((f) => f.format !== want).map((f) => f.name);
  if (off.length) fail(`${what}: columns ${off} came back as ${binary ? 'text' : 'binary'}`);
  for (const f of result.fields) {
    checks++;
    if (f.dataTypeID !== TYPE_OIDS[f.name]) fail(`${what}: column ${f.name} has type OID ${f.dataTypeID}, want ${TYPE_OIDS[f.name]}`);
  }
}

const TYPE_OIDS = {
  id: 23, c_int2: 21, c_int4: 23, c_int8: 20, c_numeric: 1700, c_float4: 700, c_float8: 701,
  c_bool: 16, c_text: 25, c_varchar: 1043, c_char: 1042, c_bytea: 17, c_date: 1082, c_time: 1083,
  c_timestamp: 1114, c_timestamptz: 1184, c_interval: 1186, c_uuid: 2950, c_inet: 869, c_cidr: 650,
  c_macaddr: 829, c_json: 114, c_jsonb: 3802, c_text_arr: 1009, c_int4_arr: 1007,
  holder: 25, pan: 25, pan_spaced: 1043, pan_num: 20, pan_dec: 1700, meta: 3802, pans: 1009,
  nums: 1016, note: 114, card_id: 2950, created: 1184,
};

async function prepared(client, mode, binary) {
  const what = binary ? 'prepared binary' : 'prepared';
  const want = cardsWant(mode, binary);
  const extra = binary ? { binary: true, types: binaryTypes } : {};
  for (let i = 0; i < REPEAT; i++) {
    const w = want[i % want.length];
    const r = await client.query({
      name: `matrix_card${binary ? '_bin' : ''}`, text: `${selectCards(binary)} where id = $1`, values: [w.id], ...extra,
    });
    checkFormats(what, r, binary);
    compareCards(`${what} run ${i + 1} matrix_cards`, r.rows, mode, [w], binary);
    const t = await client.query({ name: `matrix_types${binary ? '_bin' : ''}`, text: selectTypes(binary), ...extra });
    checkFormats(what, t, binary);
    compareRows(`${what} run ${i + 1} matrix_types`, plain(t.rows), typesWant(binary),
      binary ? BINARY_TYPE_COLUMNS : TYPE_COLUMNS);
  }
}

async function denied(client, sql) {
  try {
    await client.query(sql);
  } catch (e) {
    checks++;
    if (e.code !== '42501') fail(`denied sql: got SQLSTATE ${e.code}: ${e.message}`);
    const r = await client.query('select 1 as one');
    eq('select 1 after the denial', r.rows, [{ one: 1 }]);
    return;
  }
  fail(`denied sql ran without error: ${sql}`);
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const client = new pg.Client(clientConfig(args.dsn));
  await client.connect();
  try {
    await workload(client);
    await readAll(client, args.mode, false);
    ok('text');
    await readAll(client, args.mode, true);
    ok('binary');
    await prepared(client, args.mode, false);
    await prepared(client, args.mode, true);
    ok('prepared');
    if (args.deniedSql) {
      await denied(client, args.deniedSql);
      ok('denied');
    }
    await client.query(`drop table ${SCRATCH}`);
  } finally {
    await client.end();
  }
}

main().catch((e) => {
  console.error(`FAIL ${FAMILY}: ${e instanceof CheckFailed ? '' : `${e.code ? `SQLSTATE ${e.code} ` : ''}`}${e.message}`);
  process.exit(1);
});

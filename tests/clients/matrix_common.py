"""Shared by the Python scripts of the PostgreSQL client matrix (psycopg3.py, psycopg2.py,
asyncpg_client.py, sqlalchemy_client.py): command line, the values fixture.sql stored (and
their masked forms), and a checker that stops at the first failure with a clear message.

The expected values are written as psycopg 3 returns them; each script states where its
driver differs (psycopg2's memoryview for bytea, asyncpg's str for json, ...).
"""

import argparse
import datetime as dt
import ipaddress
import json
import sys
import uuid
from decimal import Decimal

PANS = ("4111111111111111", "5500005555555559")
NIL_UUID = uuid.UUID("00000000-0000-0000-0000-000000000000")
UTC = dt.timezone.utc


def parse_args(family):
    p = argparse.ArgumentParser(description=f"PostgreSQL client matrix: {family}")
    p.add_argument("--dsn", required=True, help="libpq URL or key=value conninfo")
    p.add_argument("--mode", choices=("direct", "masked"), required=True,
                   help="direct: clear card numbers expected; masked: through the masking gateway")
    p.add_argument("--denied-sql", help="a statement the gateway must refuse with SQLSTATE 42501")
    return p.parse_args()


def conninfo_to_dict(dsn):
    """key=value conninfo (libpq quoting: 'single quotes', backslash escapes) to a dict."""
    out, i, n = {}, 0, len(dsn)
    while i < n:
        while i < n and dsn[i].isspace():
            i += 1
        if i >= n:
            break
        eq = dsn.find("=", i)
        if eq < 0:
            raise ValueError(f"conninfo: missing '=' after {dsn[i:]!r}")
        key = dsn[i:eq].strip()
        i = eq + 1
        while i < n and dsn[i].isspace():
            i += 1
        val = []
        if i < n and dsn[i] == "'":
            i += 1
            while i < n and dsn[i] != "'":
                if dsn[i] == "\\" and i + 1 < n:
                    i += 1
                val.append(dsn[i])
                i += 1
            if i >= n:
                raise ValueError("conninfo: unterminated quoted value")
            i += 1
        else:
            while i < n and not dsn[i].isspace():
                if dsn[i] == "\\" and i + 1 < n:
                    i += 1
                val.append(dsn[i])
                i += 1
        out[key] = "".join(val)
    return out


def is_url(dsn):
    return dsn.startswith(("postgresql://", "postgres://"))


# --- expected values -------------------------------------------------------------------------

TYPE_COLUMNS = [
    "id", "c_int2", "c_int4", "c_int8", "c_numeric", "c_float4", "c_float8", "c_bool",
    "c_text", "c_varchar", "c_char", "c_bytea", "c_date", "c_time", "c_timestamp",
    "c_timestamptz", "c_interval", "c_uuid", "c_inet", "c_cidr", "c_macaddr", "c_json",
    "c_jsonb", "c_text_arr", "c_int4_arr",
]
CARD_COLUMNS = [
    "id", "holder", "pan", "pan_spaced", "pan_num", "pan_dec", "meta", "pans", "nums", "note",
    "card_id", "created",
]
SELECT_TYPES = f"select {', '.join(TYPE_COLUMNS)} from matrix_types order by id"
SELECT_CARDS = f"select {', '.join(CARD_COLUMNS)} from matrix_cards order by id"


def expected_types():
    """matrix_types as psycopg 3 returns it: one dict per row, in id order."""
    row1 = {
        "id": 1, "c_int2": -32768, "c_int4": 2147483647, "c_int8": 12345678901234567,
        "c_numeric": Decimal("12345678.9012"), "c_float4": 1.5, "c_float8": -1234.5678,
        "c_bool": True, "c_text": "héllo 日本 🎉", "c_varchar": "varchar é", "c_char": "ab   ",
        "c_bytea": b"\xde\xad\xbe\xef\x00\xff", "c_date": dt.date(2024, 2, 29),
        "c_time": dt.time(13, 45, 30, 123456),
        "c_timestamp": dt.datetime(2024, 2, 29, 13, 45, 30, 123456),
        "c_timestamptz": dt.datetime(2024, 2, 29, 13, 45, 30, 123456, tzinfo=UTC),
        "c_interval": dt.timedelta(days=3, hours=4, minutes=5, seconds=6, microseconds=789000),
        "c_uuid": uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
        "c_inet": ipaddress.ip_interface("203.0.113.7/24"),
        "c_cidr": ipaddress.ip_network("198.51.100.0/24"),
        "c_macaddr": "08:00:2b:01:02:03",
        "c_json": {"a": [1, 2.5, "x"], "b": None},
        "c_jsonb": {"k": "日本", "n": 42, "nested": {"t": True}},
        "c_text_arr": ["a", "b c", "é", None], "c_int4_arr": [1, 2, 3],
    }
    row2 = {c: None for c in TYPE_COLUMNS}
    row2.update({"id": 2, "c_int2": 0, "c_bool": False, "c_text": "", "c_bytea": b"",
                 "c_jsonb": [], "c_text_arr": []})
    return [row1, row2]


def mask_text(pan):
    """What the gateway shows of a PAN in text: every digit but the last four starred."""
    return "".join("*" if c.isdigit() else c for c in pan[:-4]) + pan[-4:]


def mask_num(pan):
    """What the gateway shows of a PAN stored as a number: all but the last four digits zeroed."""
    return int(pan[-4:])


def expected_cards(mode):
    """matrix_cards as psycopg 3 returns it, clear (direct) or masked."""
    masked = mode == "masked"
    text = mask_text if masked else (lambda p: p)
    num = mask_num if masked else int

    def spaced(p):
        s = " ".join(p[i:i + 4] for i in range(0, 16, 4))
        return mask_text(s) if masked else s

    def meta(p, brand):
        return {"pan": text(p), "n": num(p), "brand": brand}

    pans = [text(p) for p in PANS]
    nums = [num(p) for p in PANS]
    rows = []
    for i, (p, holder, brand, card, created) in enumerate([
        (PANS[0], "Ada Lovelace", "visa", NIL_UUID, dt.datetime(2024, 3, 1, 12, tzinfo=UTC)),
        (PANS[1], "Grace Hopper", "mastercard", uuid.UUID("6ba7b810-9dad-11d1-80b4-00c04fd430c8"),
         dt.datetime(2024, 3, 2, 8, 30, 0, 500000, tzinfo=UTC)),
    ], start=1):
        rows.append({
            "id": i, "holder": holder, "pan": text(p), "pan_spaced": spaced(p),
            "pan_num": num(p), "pan_dec": Decimal(num(p)), "meta": meta(p, brand),
            "pans": list(pans), "nums": list(nums), "note": meta(p, brand),
            "card_id": card, "created": created,
        })
    rows.append({
        "id": 3, "holder": "No Card", "pan": None, "pan_spaced": None, "pan_num": None,
        "pan_dec": None, "meta": {"brand": None}, "pans": [], "nums": None, "note": None,
        "card_id": uuid.UUID("f47ac10b-58cc-4372-a567-0e02b2c3d479"),
        "created": dt.datetime(2024, 3, 3, tzinfo=UTC),
    })
    return rows


class JsonText:
    """Expected value for a driver that returns json/jsonb as text (asyncpg): the text must
    parse to `value`; the exact spacing is the server's (or the gateway's) business."""

    def __init__(self, value):
        self.value = value

    def __repr__(self):
        return f"JsonText({self.value!r})"


# --- checking ---------------------------------------------------------------------------------

def flatten(value):
    """Every part of a driver value as text, recursively: what a PAN scan must look through."""
    if isinstance(value, dict):
        return " ".join(f"{flatten(k)}={flatten(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return " ".join(flatten(v) for v in value)
    if isinstance(value, memoryview):
        value = bytes(value)
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def mismatch(got, want, path=""):
    """None when `got` equals `want` and has the same driver type, element by element;
    else where and how they differ."""
    if isinstance(want, JsonText):
        if not isinstance(got, str):
            return f"{path}: got {type(got).__name__} {got!r}, want json text"
        try:
            parsed = json.loads(got)
        except ValueError as e:
            return f"{path}: not valid json ({e}): {got!r}"
        return mismatch(parsed, want.value, path)
    if want is None or got is None:
        return None if got is want else f"{path}: got {got!r}, want {want!r}"
    if type(want) in (bool, int, float, str, bytes, Decimal):
        if type(got) is not type(want):
            return f"{path}: got {type(got).__name__} {got!r}, want {type(want).__name__} {want!r}"
    elif not isinstance(got, type(want)):
        return f"{path}: got {type(got).__name__} {got!r}, want {type(want).__name__} {want!r}"
    if isinstance(want, dict):
        if set(got) != set(want):
            return f"{path}: keys {sorted(got)}, want {sorted(want)}"
        for k in want:
            m = mismatch(got[k], want[k], f"{path}.{k}")
            if m:
                return m
        return None
    if isinstance(want, list):
        if len(got) != len(want):
            return f"{path}: got {got!r}, want {want!r}"
        for i, (g, w) in enumerate(zip(got, want)):
            m = mismatch(g, w, f"{path}[{i}]")
            if m:
                return m
        return None
    if isinstance(want, memoryview):
        # psycopg2's bytea: compare the bytes (memoryview equality also compares formats).
        got, want = bytes(got), bytes(want)
    if isinstance(want, Decimal) and str(got) != str(want):
        return f"{path}: got Decimal {got}, want {want} (same scale)"
    if isinstance(want, dt.datetime) and (got.tzinfo is None) != (want.tzinfo is None):
        return f"{path}: got {got!r}, want {want!r} (time zone awareness differs)"
    if got != want:
        return f"{path}: got {got!r}, want {want!r}"
    return None


class Checker:
    def __init__(self, family):
        self.family = family
        self.count = 0

    def fail(self, msg):
        print(f"FAIL {self.family}: {msg}", file=sys.stderr, flush=True)
        sys.exit(1)

    def true(self, what, cond, detail=""):
        self.count += 1
        if not cond:
            self.fail(f"{what}{': ' + detail if detail else ''}")

    def eq(self, what, got, want):
        self.count += 1
        m = mismatch(got, want)
        if m:
            self.fail(f"{what}{m}")

    def rows(self, what, got, want, columns):
        """Compares driver rows (sequences in `columns` order) with expected dicts."""
        got = [list(r) for r in got]
        self.true(f"{what}: row count", len(got) == len(want), f"got {len(got)}, want {len(want)}")
        for row, exp in zip(got, want):
            self.true(f"{what}: column count", len(row) == len(columns), f"{len(row)} columns")
            for col, val in zip(columns, row):
                self.eq(f"{what} id={exp['id']} {col}", val, exp[col])

    def no_pans(self, what, rows):
        """No clear PAN anywhere in what the driver returned (masked mode)."""
        self.count += 1
        text = flatten([list(r) for r in rows])
        for pan in PANS:
            if pan in text:
                self.fail(f"{what}: clear PAN {pan} in driver values: {text[:300]!r}")

    def cards(self, what, got, mode, want=None):
        got = [list(r) for r in got]  # rows may be one-shot iterators (asyncpg's values())
        if mode == "masked":
            self.no_pans(what, got)
        self.rows(what, got, want if want is not None else expected_cards(mode), CARD_COLUMNS)

    def ok(self, variant):
        print(f"ok {self.family} {variant}: {self.count} checks", flush=True)
        self.count = 0

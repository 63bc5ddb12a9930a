"""`pci-mask`, in Python: masks every card number (PAN) in every result (PCI DSS 3.4).

A port of the Rust policy in ``policies/pci-mask`` that gives the same verdicts and the same
edits; both pass ``policies/pci-mask/cases.toml`` and ``cases-lineage.toml``. The detector
itself is ``warden_pan.py`` beside this file, a copy of ``policy-sdk/pan/src/lib.rs``.

``check`` answers ``mask`` for every SQL statement that can return rows (everything but
transaction control, SET, PREPARE, ...; SQL the gateway cannot read fully too), every shell
command and every HTTP request, every SFTP open (its reads are masked) and every SFTP
operation answered with file names (a listing, realpath, readlink); the control statements,
other SFTP file operations and port forwards are allowed as is. ``mask_rows`` replaces the digits of each PAN in any cell, also
inside longer text, keeping the last four, the separators and escape sequences
(``**** **** **** 1111``). NULLs, non-PAN numbers and Luhn-invalid look-alikes are left alone.

A PAN is 13 to 19 digits (of any script) that pass Luhn and start like a card of that length
(IIN), contiguous or in groups as cards are printed, joined by up to three separators
(spaces, ``- . / _ +``, Unicode spaces, dashes, dots and slashes) and through characters a
terminal does not show (escape codes, zero-width, direction and combining marks); windows are also
found in longer runs of digits. The exact rules are in the crate docs of
``policy-sdk/pan/src/lib.rs``.

Content scanning cannot see a card number the query transformed (``reverse(pan)``, ``substr``
pieces, ``pan::bigint + 1``). For the columns named in ``sensitive_columns``, ``check`` goes by
lineage (the host's ``sql.columns``): such a column may leave only as itself; an expression
over it is refused, naming the column. Using it to choose rows stays allowed unless
``refuse_filters`` is set. With any sensitive column, catalogs that show values
(``pg_stats``, ``pg_stat_activity``, ...) are refused, and so is code whose body the gateway
cannot read (``DO``, ``CREATE FUNCTION``, triggers, rules) that names a sensitive column.

Config (optional JSON; warden.toml tables arrive as JSON):
``{"rule": "pan", "exempt_columns": ["card_last4"], "sensitive_columns": ["cards.pan"],
"refuse_filters": false}`` -- ``rule`` names the rule in the masked-data log (default
``pan``); ``exempt_columns`` lists result columns never masked (exact names, ASCII case
ignored); ``sensitive_columns`` lists ``table.column`` (or ``schema.table.column``) names, a
table without a schema matching it in any schema. Unknown keys are refused.

Build with ``build.sh`` (componentize-py). The module runs in the gateway's sandbox: no files,
sockets, environment or real clock. Everything at module level runs once, at *build* time
(componentize-py snapshots the initialised interpreter), so it must not do I/O.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import wit_world
from componentize_py_types import Err
from wit_world.imports import types as wit  # the WIT interface `types` (not the stdlib module)

from warden_pan import mask_pans  # built into the component with this file (build.sh)

# --------------------------------------------------------------------------------------------
# Statement kinds
# --------------------------------------------------------------------------------------------

#: Statement kinds that only change session or transaction state: they never return rows
#: (``policy-sdk/src/sql.rs`` ``CONTROL_KINDS``). Every other kind, ``other`` and
#: ``unknown`` included, may return rows and is masked: fail closed.
CONTROL_KINDS = frozenset(
    {"begin", "commit", "rollback", "set", "deallocate", "discard", "listen", "notify", "prepare"}
)

#: SFTP operations answered with file names (``ls``, ``realpath``, ``readlink``): masked, so a
#: file named after a card number is not listed in clear.
NAMING_OPS = frozenset({"list", "realpath", "readlink"})

# --------------------------------------------------------------------------------------------
# Lineage: sensitive columns that leave through an expression
# --------------------------------------------------------------------------------------------


def _unqualified(name: str) -> str:
    """The last part of a possibly schema-qualified name (``policy-sdk/src/sql.rs``)."""
    return name.rpartition(".")[2]


def _table_matches(used: str, table: str, tables: Sequence[str]) -> bool:
    """Whether a use's table (``""``: an unqualified column among several tables) is the
    sensitive ``table``; a ``table`` without a schema matches it in any schema."""

    def same(name: str) -> bool:
        return name == table or ("." not in table and _unqualified(name) == table)

    return any(map(same, tables)) if not used else same(used)


#: Catalogs that show values: column statistics (most common values, histogram bounds) and
#: other sessions' statement texts (every session shares the gateway's upstream role).
LEAKING_CATALOGS = frozenset(
    {
        "pg_stats",
        "pg_stats_ext",
        "pg_stats_ext_exprs",
        "pg_statistic",
        "pg_statistic_ext_data",
        "pg_stat_activity",
        "pg_stat_statements",
    }
)

#: Statements whose bodies are text to the gateway (PL/pgSQL, SQL function bodies, rules).
OPAQUE_CODE = frozenset(
    {"DoStmt", "CreateFunctionStmt", "CreateTrigStmt", "RuleStmt", "CreateEventTrigStmt"}
)


def _mentions(text: str, word: str) -> bool:
    """Whether ``text`` (lower-cased) has ``word`` as a whole identifier. Rust's
    ``match_indices``: non-overlapping occurrences, from the left."""

    def ident(c: str) -> bool:
        return c.isalnum() or c in "_$"

    at = text.find(word)
    while at >= 0:
        end = at + len(word)
        if not (at > 0 and ident(text[at - 1])) and not (end < len(text) and ident(text[end])):
            return True
        at = text.find(word, end)
    return False


def refused_by_lineage(
    sql: wit.Sql, sensitive: Sequence[tuple[str, str]], refuse_filters: bool
) -> str | None:
    """Why ``sql`` is refused: it reads a catalog that holds other statements' values; it is
    code whose body the gateway cannot read that names a ``sensitive`` ``(table, column)``; or
    it uses one through an expression (or, with ``refuse_filters``, to choose rows). None
    when it does none of these, and always when nothing is sensitive."""
    if not sensitive:
        return None
    for table in sql.tables:
        if _unqualified(table) in LEAKING_CATALOGS:
            return (
                f"pci-mask: {table} holds values of other statements and of the card-number "
                "columns; it is not readable here"
            )
    if sql.statement_type in OPAQUE_CODE:
        text = sql.text.lower()  # as Rust's `to_lowercase`
        for table, column in sensitive:
            if _mentions(text, column):
                return (
                    f"pci-mask: this code names {column} ({table}.{column} holds card numbers) "
                    "in a body the gateway cannot read"
                )
        # `FOR r IN SELECT * FROM cards ... RAISE NOTICE '%', translate(r::text, ...)` reads
        # the column without naming it.
        for table, column in sensitive:
            if _mentions(text, _unqualified(table)):
                return (
                    f"pci-mask: this code reads {table} ({table}.{column} holds card numbers) "
                    "in a body the gateway cannot read"
                )
        # Statements built at run time can name anything.
        if _mentions(text, "execute"):
            return (
                "pci-mask: this code builds statements at run time (EXECUTE) in a body the "
                "gateway cannot read, and card-number columns are protected here"
            )
    for use in sql.columns:
        if use.usage == wit.ColumnUsage.TRANSFORMED:
            how = "through an expression (a function, operator, cast or aggregate)"
        elif use.usage == wit.ColumnUsage.FILTER and refuse_filters:
            how = "to choose rows"
        else:
            continue
        for table, column in sensitive:
            if use.column in (column, "*") and _table_matches(use.table, table, sql.tables):
                return (
                    f"pci-mask: {table}.{column} holds card numbers and may leave only as "
                    f"itself, masked; this statement uses it {how}"
                )
    return None


# --------------------------------------------------------------------------------------------
# Masking
# --------------------------------------------------------------------------------------------


def mask_rows(
    rows: Sequence[Sequence[str | None]],
    rule: str,
    mask_column: Sequence[bool] | None = None,
) -> list[wit.CellEdit]:
    """Edits that mask every PAN in ``rows``, each tagged with ``rule`` for the audit log.

    NULL cells and cells without a PAN are left alone. With ``mask_column``, only columns
    ``c`` with ``mask_column[c]`` true are scanned, and cells beyond it.
    """
    edits = []
    for r, row in enumerate(rows):
        for c, cell in enumerate(row):
            if cell is None or (mask_column and c < len(mask_column) and not mask_column[c]):
                continue
            masked = mask_pans(cell)
            if masked is not None:
                edits.append(wit.CellEdit(row=r, column=c, value=masked, rule=rule))
    return edits


# --------------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------------

#: What Rust's ``str::trim`` strips (Unicode White_Space). Python's bare ``str.strip()`` also
#: strips U+001C..U+001F, so a config of just those would be "empty" here but refused by Rust.
_WHITESPACE = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
#: ASCII-only lower-casing, as Rust's ``eq_ignore_ascii_case`` (``str.lower`` would also fold
#: ``É`` to ``é`` and the Kelvin sign to ``k``).
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_FIELDS = ("rule", "exempt_columns", "sensitive_columns", "refuse_filters")
#: Deepest JSON nesting parsed, as serde_json's recursion limit. Deeper input is refused
#: before parsing: in Wasm, CPython's recursive JSON decoder would overflow the stack (a trap)
#: before raising RecursionError.
_MAX_NESTING = 128


class ConfigError(ValueError):
    """A config ``init`` refuses; the message names the key."""


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``json`` hook: refuse duplicate keys, as serde does for struct fields."""
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise ConfigError(f"duplicate field `{key}`")
        obj[key] = value
    return obj


def _nesting(text: str) -> int:
    """How deeply JSON arrays and objects nest in ``text`` (brackets in strings ignored)."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def _refuse_constant(name: str) -> Any:
    """``json`` hook: refuse ``NaN`` / ``Infinity``, which are not JSON (serde refuses them)."""
    raise ConfigError(f"`{name}` is not valid JSON")


def _utf8_string(value: Any, what: str) -> str:
    """``value`` if it is a string that can cross the WIT boundary (no lone surrogates)."""
    if not isinstance(value, str):
        raise ConfigError(f"{what}: expected a string, got {type(value).__name__}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigError(f"{what}: lone surrogate in string") from None
    return value


def _string_list(raw: dict[str, Any], key: str) -> list[str]:
    """``raw[key]`` (default: empty), a list of strings that can cross the WIT boundary."""
    values = raw.get(key, [])
    if not isinstance(values, list):
        raise ConfigError(f"`{key}`: expected a list of strings, got {type(values).__name__}")
    return [_utf8_string(v, f"`{key}`") for v in values]


@dataclass(frozen=True)
class PciMask:
    """The policy's state for one instance: built once by ``init``."""

    rule: str = "pan"
    #: Exempt column names, ASCII lower-cased.
    exempt: frozenset[str] = frozenset()
    #: Sensitive ``(table, column)`` names, lower-cased, in config order.
    sensitive: tuple[tuple[str, str], ...] = ()
    refuse_filters: bool = False

    @classmethod
    def from_config(cls, config: str) -> PciMask:
        """Parse ``config``: empty, or a JSON object with the keys of ``_FIELDS``."""
        if not config.strip(_WHITESPACE):
            return cls()
        if _nesting(config) > _MAX_NESTING:
            raise ConfigError(f"invalid JSON: nested deeper than {_MAX_NESTING}")
        try:
            raw = json.loads(
                config,
                object_pairs_hook=_object_without_duplicates,
                parse_constant=_refuse_constant,
            )
        except ConfigError:
            raise
        except (ValueError, RecursionError) as e:  # JSONDecodeError; nesting too deep
            raise ConfigError(f"invalid JSON: {e}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"expected a JSON object, got {type(raw).__name__}")
        unknown = [k for k in raw if k not in _FIELDS]
        if unknown:
            expected = ", ".join(f"`{f}`" for f in _FIELDS)
            raise ConfigError(f"unknown field `{unknown[0]}`, expected one of {expected}")
        rule = _utf8_string(raw.get("rule", "pan"), "`rule`")
        if not rule:
            raise ConfigError("`rule` must not be empty")
        exempt = frozenset(
            c.translate(_ASCII_LOWER) for c in _string_list(raw, "exempt_columns")
        )
        sensitive = []
        for name in _string_list(raw, "sensitive_columns"):
            # As Rust's `to_lowercase` and `rsplit_once('.')`.
            table, dot, column = name.lower().rpartition(".")
            if not (dot and table and column):
                raise ConfigError(
                    f"sensitive column {json.dumps(name, ensure_ascii=False)} must be written "
                    "table.column"
                )
            sensitive.append((table, column))
        refuse_filters = raw.get("refuse_filters", False)
        if not isinstance(refuse_filters, bool):
            raise ConfigError(
                f"`refuse_filters`: expected a boolean, got {type(refuse_filters).__name__}"
            )
        return cls(
            rule=rule,
            exempt=exempt,
            sensitive=tuple(sensitive),
            refuse_filters=refuse_filters,
        )

    def check(self, command: wit.Command) -> wit.Verdict:
        """``deny`` for a statement that transforms a sensitive column; else ``mask`` unless
        the command is a SQL statement that cannot return rows, an SFTP file operation other
        than an open (whose reads are masked) or one answered with names (a listing, realpath,
        readlink), or a port forward."""
        if isinstance(command, wit.Command_Sql):
            reason = refused_by_lineage(command.value, self.sensitive, self.refuse_filters)
            if reason is not None:
                return wit.Verdict_Deny(reason)
            if command.value.kind in CONTROL_KINDS:
                return wit.Verdict_Allow()
        if isinstance(command, wit.Command_File) and (
            command.value.op.startswith("open-") or command.value.op in NAMING_OPS
        ):
            return wit.Verdict_Mask()
        if isinstance(command, (wit.Command_File, wit.Command_Forward)):
            return wit.Verdict_Allow()
        return wit.Verdict_Mask()

    def mask_rows(
        self, columns: Sequence[wit.Column], rows: Sequence[Sequence[str | None]]
    ) -> list[wit.CellEdit]:
        """Mask every PAN in the batch, outside the exempt columns."""
        if not self.exempt:
            return mask_rows(rows, self.rule)
        # Decide once per batch which columns to scan, so exempt cells are never scanned and
        # no name is compared per cell. A cell beyond the described columns is masked.
        scan = [c.name.translate(_ASCII_LOWER) not in self.exempt for c in columns]
        return mask_rows(rows, self.rule, scan)


# --------------------------------------------------------------------------------------------
# The component's exports
# --------------------------------------------------------------------------------------------

#: The instance's policy, set by a successful ``init``. Module state, not an attribute of
#: ``WitWorld``: componentize-py creates the export object itself, and how often is its
#: business (one Wasm instance is one interpreter, so module state is per instance).
_policy: PciMask | None = None


class WitWorld(wit_world.WitWorld):
    """The ``policy`` world's exports (componentize-py names the world's class ``WitWorld``)."""

    def init(self, config: str) -> None:
        global _policy
        if _policy is not None:
            raise Err("policy initialised twice")
        try:
            _policy = PciMask.from_config(config)
        except ConfigError as e:
            raise Err(f"pci-mask config: {e}") from None

    def check(self, session: wit.Session, command: wit.Command) -> wit.Verdict:
        if _policy is None:
            return wit.Verdict_Deny("policy was not initialised")
        return _policy.check(command)

    def mask_rows(
        self,
        session: wit.Session,
        columns: list[wit.Column],
        rows: list[list[str | None]],
    ) -> list[wit.CellEdit]:
        if _policy is None:
            raise Err("policy was not initialised")
        return _policy.mask_rows(columns, rows)

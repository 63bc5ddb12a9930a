"""`pci-mask`, in Python: masks every card number (PAN) in every result (PCI DSS 3.4).

A port of the Rust policy in ``policies/pci-mask`` (and of ``policy-sdk/src/pan.rs``) that
gives the same verdicts and the same edits; both pass ``policies/pci-mask/cases.toml``.

``check`` answers ``mask`` for every SQL statement that can return rows (everything but
transaction control, SET, PREPARE, ...; SQL the gateway cannot read fully too), every shell
command and every HTTP request; the control statements are allowed as is. ``mask_rows``
replaces the digits of each PAN in any cell, also inside longer text, keeping the last four and
the separators (``**** **** **** 1111``). NULLs, non-PAN numbers and Luhn-invalid look-alikes are
left alone.

A PAN is 13 to 19 ASCII digits that pass the Luhn check, written contiguously
(``4111111111111111``) or in groups joined by one space or one dash, the same separator
throughout (``4111 1111 1111 1111``, ``3782-822463-10005``). A digit right before or after the
candidate disqualifies it: it is then part of a longer number (an id, an amount).

Config (optional JSON; warden.toml tables arrive as JSON):
``{"rule": "pan", "exempt_columns": ["card_last4"]}`` -- ``rule`` names the rule in the
masked-data log (default ``pan``); ``exempt_columns`` lists result columns never masked (exact
names, ASCII case ignored). Unknown keys are refused.

Build with ``build.sh`` (componentize-py). The module runs in the gateway's sandbox: no files,
sockets, environment or real clock. Everything at module level runs once, at *build* time
(componentize-py snapshots the initialised interpreter), so it must not do I/O.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import wit_world
from componentize_py_types import Err
from wit_world.imports import types as wit  # the WIT interface `types` (not the stdlib module)

# --------------------------------------------------------------------------------------------
# Statement kinds
# --------------------------------------------------------------------------------------------

#: Statement kinds that only change session or transaction state: they never return rows
#: (``policy-sdk/src/sql.rs`` ``CONTROL_KINDS``). Every other kind, ``other`` and
#: ``unknown`` included, may return rows and is masked: fail closed.
CONTROL_KINDS = frozenset(
    {"begin", "commit", "rollback", "set", "deallocate", "discard", "listen", "notify", "prepare"}
)

# --------------------------------------------------------------------------------------------
# PAN detection and masking
# --------------------------------------------------------------------------------------------

#: Fewest and most digits in a PAN (ISO/IEC 7812).
MIN_DIGITS = 13
MAX_DIGITS = 19

_ASCII_DIGITS = "0123456789"
#: A *chain*: ASCII digit groups joined by single spaces or dashes (of either kind), holding
#: at least 13 digits. No PAN crosses a chain's ends, so chains are handled one by one, and the
#: regex engine (in C) passes over every shorter chain -- dates, amounts, ids -- by itself.
#: The look-behinds (after the first digit, so that the regex engine can skip ahead to the
#: next digit) make a match start only where a chain starts; the greedy repetition runs to
#: where it ends. ``[0-9]``, not ``\d``: ``\d`` also matches other scripts' digits (``٤``,
#: ``４``), which the Rust scanner, working on bytes, never counts.
_CHAIN = re.compile(r"[0-9](?<![0-9][0-9])(?<![0-9][ -][0-9])(?:[ -]?[0-9]){12,}")  # 1 + 12 = 13
#: One group: a maximal run of ASCII digits.
_GROUP = re.compile(r"[0-9]+")
#: Luhn's doubling, digit by digit, already reduced (``2 * d - 9`` above 9).
_DOUBLE = str.maketrans("0123456789", "0246813579")
#: Every ASCII digit to ``*``.
_HIDE = str.maketrans(_ASCII_DIGITS, "*" * 10)

Span = tuple[int, int]


def luhn_valid(digits: str) -> bool:
    """Whether ``digits`` (ASCII digits only) pass the Luhn (mod 10) check.

    False for an empty string or one holding anything but ``0``-``9``.

    >>> luhn_valid("4111111111111111"), luhn_valid("4111111111111112")
    (True, False)
    """
    return bool(digits) and not digits.strip(_ASCII_DIGITS) and _luhn(digits)


def _luhn(digits: str) -> bool:
    """Luhn over ``digits``, known to be non-empty ASCII digits.

    From the right, odd positions count as they are and even positions doubled; summing the
    ASCII codes of both halves (and subtracting ``'0'`` once per digit) keeps every loop in C.
    """
    plain = digits[-1::-2].encode()
    doubled = digits[-2::-2].translate(_DOUBLE).encode()
    return (sum(plain) + sum(doubled) - 48 * len(digits)) % 10 == 0


def _may_hold_pan(text: str) -> bool:
    """The cheap pre-check: a text with fewer than 13 ASCII digits cannot hold a PAN.

    Nearly every cell stops here: a length test, then ten ``str.count`` calls in C.
    """
    return len(text) >= MIN_DIGITS and sum(map(text.count, _ASCII_DIGITS)) >= MIN_DIGITS


def _pans_in_chain(chain: str) -> list[Span]:
    """``(start, end)`` of each PAN in one chain, left to right.

    The common shapes are answered at once: a contiguous chain is one PAN or none, and a
    grouped chain with one separator kind and at most 19 digits that passes Luhn is one PAN
    (the longest sequence of whole groups from its first group). Anything else takes the
    general scan, :func:`_scan_chain`.
    """
    if chain.isdigit():  # the chain holds ASCII digits and separators only
        return [(0, len(chain))] if len(chain) <= MAX_DIGITS and _luhn(chain) else []
    digits = chain.replace(" ", "").replace("-", "")
    if len(digits) <= MAX_DIGITS and not (" " in chain and "-" in chain) and _luhn(digits):
        return [(0, len(chain))]
    return _scan_chain(chain)


def _scan_chain(chain: str) -> list[Span]:
    """The general scan of one chain: from each group, left to right, take the longest
    sequence of whole groups with 13..=19 digits, joined by one separator kind, that passes
    Luhn; after a PAN, go on after it, else from the next group.
    """
    groups = [m.span() for m in _GROUP.finditer(chain)]
    found = []
    k = 0
    while k < len(groups):
        pan = _longest_pan_at(chain, groups, k)
        if pan is None:
            k += 1
        else:
            end, used = pan
            found.append((groups[k][0], end))
            k += used
    return found


def _longest_pan_at(chain: str, groups: Sequence[Span], k: int) -> tuple[int, int] | None:
    """The longest PAN made of whole groups starting with ``groups[k]``, as ``(end, number
    of groups used)``, or None. Groups join while their separator stays the same
    (``4111 1111-1111 1111`` is no PAN).
    """
    candidates = []  # (end, groups used) of each sequence with 13..=19 digits, shortest first
    digits = 0
    separator = ""
    i = k
    while True:
        start, end = groups[i]
        digits += end - start
        if digits > MAX_DIGITS:
            break
        if digits >= MIN_DIGITS:
            candidates.append((end, i - k + 1))
        if i + 1 == len(groups):
            break
        sep = chain[end]  # within a chain, consecutive groups are one separator apart
        if separator and sep != separator:
            break
        separator = sep
        i += 1
    first = groups[k][0]
    for end, used in reversed(candidates):
        if _luhn(chain[first:end].replace(separator, "") if separator else chain[first:end]):
            return end, used
    return None


def find_pans(text: str) -> list[slice]:
    """Every PAN in ``text`` as a slice, in order, not overlapping.

    Each slice starts at the PAN's first digit and ends after its last, so it includes the
    separators between groups. Within a run of separator-joined digit groups the scan goes
    left to right and, from each group, takes the longest sequence of whole groups that
    qualifies: ``"4111111111111111 5500005555555559"`` gives two PANs,
    ``"ref 12 4111111111111111"`` one.

    >>> text = "card 4111-1111-1111-1111 exp 12/29"
    >>> [text[s] for s in find_pans(text)]
    ['4111-1111-1111-1111']
    """
    if not _may_hold_pan(text):
        return []
    return [
        slice(m.start() + a, m.start() + b)
        for m in _CHAIN.finditer(text)
        for a, b in _pans_in_chain(m.group())
    ]


def _mask_pan(pan: str) -> str:
    """``pan`` with every digit but the last four replaced by ``*``, separators kept."""
    keep = len(pan)
    for _ in range(4):
        keep -= 1
        if pan[keep] in " -":  # a separator among the last four digits: step over it
            keep -= 1
    return pan[:keep].translate(_HIDE) + pan[keep:]


def _mask_chain(match: re.Match[str]) -> str:
    """``re.sub`` callback: the chain with each of its PANs masked."""
    chain = match.group()
    spans = _pans_in_chain(chain)
    if len(spans) == 1 and spans[0] == (0, len(chain)):  # the usual case: one whole PAN
        return _mask_pan(chain)
    parts: list[str] = []
    copied = 0
    for start, end in spans:
        parts += (chain[copied:start], _mask_pan(chain[start:end]))
        copied = end
    parts.append(chain[copied:])
    return "".join(parts)


def mask_pans(text: str) -> str | None:
    """``text`` with every PAN's digits but the last four replaced by ``*``, separators kept;
    None when it holds no PAN (the common case).

    >>> mask_pans("4111 1111 1111 1111")
    '**** **** **** 1111'
    >>> mask_pans("order 1234") is None
    True
    """
    if not _may_hold_pan(text):
        return None
    masked = _CHAIN.sub(_mask_chain, text)
    # Masking a PAN always turns digits into `*`, so an unchanged text held none.
    return None if masked == text else masked


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
_FIELDS = ("rule", "exempt_columns")
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


@dataclass(frozen=True)
class PciMask:
    """The policy's state for one instance: built once by ``init``."""

    rule: str = "pan"
    #: Exempt column names, ASCII lower-cased.
    exempt: frozenset[str] = frozenset()

    @classmethod
    def from_config(cls, config: str) -> PciMask:
        """Parse ``config`` (empty, or a JSON object with ``rule`` / ``exempt_columns``)."""
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
            raise ConfigError(
                f"unknown field `{unknown[0]}`, expected one of `rule`, `exempt_columns`"
            )
        rule = _utf8_string(raw.get("rule", "pan"), "`rule`")
        if not rule:
            raise ConfigError("`rule` must not be empty")
        columns = raw.get("exempt_columns", [])
        if not isinstance(columns, list):
            raise ConfigError(
                f"`exempt_columns`: expected a list of strings, got {type(columns).__name__}"
            )
        exempt = frozenset(
            _utf8_string(c, "`exempt_columns`").translate(_ASCII_LOWER) for c in columns
        )
        return cls(rule=rule, exempt=exempt)

    def check(self, command: wit.Command) -> wit.Verdict:
        """``mask`` unless the command is a SQL statement that cannot return rows, an SFTP
        file operation or a port forward (byte streams, not rows: nothing to mask)."""
        if isinstance(command, wit.Command_Sql) and command.value.kind in CONTROL_KINDS:
            return wit.Verdict_Allow()
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

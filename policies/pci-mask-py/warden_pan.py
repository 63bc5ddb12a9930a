"""Card-number (PAN) detection and masking: the Python copy of ``policy-sdk/pan/src/lib.rs``.

This module mirrors the Rust crate ``warden-pan`` rule for rule and must give byte-identical
masked text (``gateway/tests/lang_python.rs`` compares the two). **Change it together with
``policy-sdk/pan/src/lib.rs``**: the rules are explained there (its crate docs); the names here
follow the Rust functions so the two read side by side. Only what a policy needs is ported:
``mask_pans``, ``find_pans``, ``luhn_valid`` (no stream masking).

In short: the text is read as digits (ASCII or any Unicode decimal digit, table ``ND_ZEROS``),
separators (space, tab, ``- . / _ +``, Unicode spaces and dashes, dots, slashes), invisibles
(ANSI/OSC escape sequences, control characters, zero-width characters, direction marks,
combining marks: what a terminal does not show) and anything else. A *chain* is digits at
most 3 separators (and 16 invisibles) apart; a *group* is a part of a chain without a
separator. A chain of 13 to 19 digits is one PAN if it passes Luhn, fits a card scheme (IIN
and length) and is grouped like a card (groups of >= 4 digits, the last >= 3); otherwise it is
searched for *windows* of 13 to 19 digits passing the same tests: whole groups, anywhere in a
group of >= 26 digits, or at the end of a shorter group after nothing but zeros. Chains right
after ``+``, glued to ``1Z`` or completing an IBAN are never PANs. A PAN's digits but the last
four become ``*``; overlapping windows merge and are masked whole.

Positions here are code-point indices where Rust uses byte offsets. Everything Rust reads as
bytes (escape sequences, IBANs, ``1Z``, ``+``) accepts only ASCII there, so the two agree.

Speed: a text with fewer than 13 digits is rejected by ten ``str.count`` calls (and a regex
for non-ASCII digits when the text is not ASCII). Without invisibles, one compiled regex
finds the chains of 13 digits or more, and the usual chain (one PAN) is judged with a few
string operations; other chains go to the window search, which tries only the windows the
rules allow, group by group. Text with invisibles takes the general scanner, a port of
Rust's ``each_chain``/``chain_at`` that reads only the gaps around invisibles atom by atom.
On the full 1 MiB batch of ``lang_python.rs`` (dense with digits) this takes about 1.15
times the CPU instructions of the previous, simpler detector.
"""

from __future__ import annotations

import re
from itertools import accumulate

#: Fewest and most digits in a PAN (ISO/IEC 7812).
MIN_DIGITS = 13
MAX_DIGITS = 19
#: Most separators and most invisibles between two digits of a chain.
MAX_GAP = 3
MAX_GAP_INVISIBLES = 16
#: Longest escape sequence taken as one.
MAX_ESCAPE = 32
#: Shortest group searched for windows at every offset.
MIN_SEARCHED_RUN = 2 * MIN_DIGITS

#: The zero of every block of Unicode decimal digits (general category Nd, Unicode 17), as
#: in Rust's ``ND_ZEROS``; each block is ten code points, zero to nine. Not
#: ``unicodedata``: its Unicode version is CPython's, not the crate's.
ND_ZEROS = (
    0x0030, 0x0660, 0x06F0, 0x07C0, 0x0966, 0x09E6, 0x0A66, 0x0AE6, 0x0B66, 0x0BE6, 0x0C66,
    0x0CE6, 0x0D66, 0x0DE6, 0x0E50, 0x0ED0, 0x0F20, 0x1040, 0x1090, 0x17E0, 0x1810, 0x1946,
    0x19D0, 0x1A80, 0x1A90, 0x1B50, 0x1BB0, 0x1C40, 0x1C50, 0xA620, 0xA8D0, 0xA900, 0xA9D0,
    0xA9F0, 0xAA50, 0xABF0, 0xFF10, 0x104A0, 0x10D30, 0x10D40, 0x11066, 0x110F0, 0x11136,
    0x111D0, 0x112F0, 0x11450, 0x114D0, 0x11650, 0x116C0, 0x116D0, 0x116DA, 0x11730, 0x118E0,
    0x11950, 0x11BF0, 0x11C50, 0x11D50, 0x11DA0, 0x11DE0, 0x11F50, 0x16130, 0x16A60, 0x16AC0,
    0x16B50, 0x16D70, 0x1CCF0, 0x1D7CE, 0x1D7D8, 0x1D7E2, 0x1D7EC, 0x1D7F6, 0x1E140, 0x1E2F0,
    0x1E4F0, 0x1E5F1, 0x1E950, 0x1FBF0,
)  # fmt: skip
# Checked when componentize-py imports the module at build time: a bad copy fails the build.
assert len(ND_ZEROS) == 77 and list(ND_ZEROS) == sorted(ND_ZEROS)

#: Every digit of every script, and its value.
_DIGIT_VALUE = {chr(zero + v): v for zero in ND_ZEROS for v in range(10)}
#: Every digit to its ASCII digit; every digit to ``*``.
_TO_ASCII = str.maketrans({c: chr(48 + v) for c, v in _DIGIT_VALUE.items()})
_HIDE = str.maketrans(dict.fromkeys(_DIGIT_VALUE, "*"))
#: Luhn's doubling of an ASCII digit, already reduced (``2 * d - 9`` above 9).
_DOUBLE = str.maketrans("0123456789", "0246813579")

#: Separators that are not ASCII (Rust's ``char_atom_at``): every Unicode space and dash, the
#: minus sign, dots, slashes, low lines and plus signs of other widths.
_UNICODE_SEPARATORS = frozenset(
    "\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u202f"
    "\u205f\u3000\u058a\u05be\u1400\u1806\u2010\u2011\u2012\u2013\u2014\u2015\u2e17\u2e1a"
    "\u2e3a\u2e3b\u2e40\u2e5d\u301c\u3030\u30a0\ufe31\ufe32\ufe58\ufe63\uff0d\U00010ead"
    "\u2212\xb7\u2024\u2027\u2219\u22c5\u3002\u30fb\ufe52\uff0e\uff61\uff65\u2044\u2215"
    "\uff0f\ufe4d\ufe4e\ufe4f\uff3f\uff0b\u2022\u2800"
)
#: What a terminal does not show (Rust's ``atom_at`` and ``char_atom_at``): control
#: characters but tab, newline, CR, BS, VT, FF and ESC (escape sequences are read whole);
#: C1 controls, soft hyphen, zero-width characters, direction marks, variation selectors,
#: combining marks, format controls, tags.
_INVISIBLE_CHAR = re.compile(
    "[\x00-\x07\x0e-\x1a\x1c-\x1f\x7f-\x9f\xad\u0300-\u036f\u061c\u115f\u1160\u17b4"
    "\u17b5\u180b-\u180f\u1ab0-\u1aff\u1dc0-\u1dff\u200b-\u200f\u202a-\u202e\u2060-\u206f"
    "\u20d0-\u20ff\u3164\ufe00-\ufe0f\ufe20-\ufe2f\ufeff\uffa0\ufff0-\ufffb"
    "\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0000-\U000e0fff]"
)
_ASCII_SEPARATORS = " \t-./_+"  # `+`: a space in form-encoded bodies

_D = "[" + "".join(f"\\U{z:08x}-\\U{z + 9:08x}" for z in ND_ZEROS) + "]"
_S = "[" + re.escape(_ASCII_SEPARATORS + "".join(sorted(_UNICODE_SEPARATORS))) + "]"


def _chain_regex(d: str, s: str) -> re.Pattern[str]:
    """A chain of 13 digits or more in text without invisibles: digits ``d`` at most 3
    separators ``s`` apart, as long as it goes. The look-behinds (after the first digit, so
    the regex engine can skip ahead to a digit) start a match only where a chain starts. The
    quantifiers are possessive: giving back a separator or a digit never makes a match, and
    not trying saves time."""
    return re.compile(
        f"{d}(?<!{d}{d})(?<!{d}{s}{d})(?<!{d}{s}{{2}}{d})(?<!{d}{s}{{3}}{d})"
        f"(?:{s}{{0,{MAX_GAP}}}+{d}){{{MIN_DIGITS - 1},}}+"
    )


#: Chains, and groups (runs of digits) in them. The twins for text without digits beyond
#: U+FFFF and for ASCII text are faster: the regex engine looks a character up in a table
#: when its class holds only BMP characters, but tries each range of a class that does not.
_CHAIN = _chain_regex(_D, _S)
_BMP_CHAIN = _chain_regex(
    "[" + "".join(f"\\u{z:04x}-\\u{z + 9:04x}" for z in ND_ZEROS if z < 0x10000) + "]", _S
)
_ASCII_CHAIN = _chain_regex("[0-9]", "[" + re.escape(_ASCII_SEPARATORS) + "]")
_GROUP = re.compile(f"{_D}+")
_ASCII_GROUP = re.compile("[0-9]+")
#: A character beyond U+FFFF (rare: then the digits among them decide which chain regex).
_ASTRAL = re.compile("[\U00010000-\U0010ffff]")
#: A digit that is not ASCII (only counted when the ASCII digits are too few).
_NON_ASCII_DIGIT = re.compile(_D.replace("\\U00000030-\\U00000039", ""))
#: For the general scanner: a stretch of a chain without invisibles (digits at most 3
#: separators apart), read by the regex engine; the gap after it is read atom by atom. And
#: one separator, to count the digits of such a stretch.
_PLAIN_PART = re.compile(f"{_D}(?:{_S}{{0,{MAX_GAP}}}+{_D})*+")
_SEPARATOR_CHAR = re.compile(_S)
#: Where a chain or an escape sequence can start (Rust: ASCII digit, ESC, a multi-byte char).
_CHAIN_OR_ESCAPE = re.compile("[0-9\x1b\x80-\U0010ffff]")
#: The body of an IBAN after its first four characters.
_IBAN_BODY = re.compile("[0-9A-Z ]*")

# Atoms: what the scanner sees at one place in the text (Rust's `Atom`).
_DIGIT, _SEPARATOR, _INVISIBLE, _CUT, _OTHER = range(5)

#: A window, or the union of overlapping ones: (first digit, last digit, merged), as indices
#: of the chain's digits. Merged windows are masked whole.
Window = tuple[int, int, bool]


# ---------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------


def luhn_valid(digits: str) -> bool:
    """Whether ``digits`` (ASCII digits only) pass the Luhn (mod 10) check; False for an empty
    string or one holding anything but ``0``-``9``.

    >>> luhn_valid("4111111111111111"), luhn_valid("4111111111111112"), luhn_valid("")
    (True, False, False)
    """
    return bool(digits) and digits.isascii() and digits.isdigit() and _luhn(digits)


def find_pans(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` of every PAN in ``text`` (code-point indices), in order, not
    overlapping: from its first digit to after its last, separators and escape sequences
    between them included. Overlapping windows come back as one range.

    >>> text = "card 4111-1111-1111-1111 exp 12/29"
    >>> [text[a:b] for a, b in find_pans(text)]
    ['4111-1111-1111-1111']
    """
    if not _may_hold_pan(text):
        return []
    return [
        (pos[first], pos[last] + 1)
        for pos, windows in _scan(text)
        for first, last, _ in windows
    ]


def mask_pans(text: str) -> str | None:
    """``text`` with every PAN masked: each digit but the last four becomes one ``*`` (all of
    them where windows overlapped), separators and escape sequences stay; None when ``text``
    holds no PAN (the common case).

    >>> mask_pans("4111.1111.1111.1111")
    '****.****.****.1111'
    >>> mask_pans("41111111111111115500005555555559")
    '************1111****************'
    >>> mask_pans("order 1234") is None
    True
    """
    if not _may_hold_pan(text):
        return None
    if _has_invisibles(text):
        return _mask_scanned(text)
    if text.isascii():  # O(1) in CPython
        chains = _ASCII_CHAIN
    elif any(c in _DIGIT_VALUE for c in _ASTRAL.findall(text)):
        chains = _CHAIN
    else:
        chains = _BMP_CHAIN
    masked = chains.sub(_mask_chain, text)
    # Masking turns digits into `*`: an unchanged text held no PAN.
    return None if masked == text else masked


# ---------------------------------------------------------------------------------------------
# The fast path: text without invisibles
# ---------------------------------------------------------------------------------------------


def _may_hold_pan(text: str) -> bool:
    """The cheap pre-check: a text with fewer than 13 digits cannot hold a PAN."""
    if len(text) < MIN_DIGITS:
        return False
    ascii_digits = sum(map(text.count, "0123456789"))
    if ascii_digits >= MIN_DIGITS:
        return True
    if text.isascii():  # O(1) in CPython
        return False
    return ascii_digits + len(_NON_ASCII_DIGIT.findall(text)) >= MIN_DIGITS


def _has_invisibles(text: str) -> bool:
    return "\x1b" in text or _INVISIBLE_CHAR.search(text) is not None


def _mask_chain(match: re.Match[str]) -> str:
    """``re.sub`` callback: the chain (digits and separators only) with its PANs masked."""
    chain = match.group()
    group_regex = _ASCII_GROUP if chain.isascii() else _GROUP
    groups = group_regex.findall(chain)
    shown = "".join(groups)
    digits = shown if chain.isascii() else shown.translate(_TO_ASCII)
    start, end = match.span()
    windows = _windows(match.string, start, end, digits, list(map(len, groups)))
    if not windows:
        return chain
    if len(windows) == 1 and windows[0] == (0, len(digits) - 1, False):
        return _hide_all_but_last_four(chain)  # the usual case: the chain is one PAN
    # Mask the digits as one string, then put the separators back between the groups.
    for first, last, merged in windows:
        stop = last + 1 if merged else last - 3
        shown = shown[:first] + "*" * (stop - first) + shown[stop:]
    separators = group_regex.split(chain)  # "", what is between the groups, ""
    parts = []
    at = 0
    for separator, group in zip(separators, groups):
        parts += (separator, shown[at : at + len(group)])
        at += len(group)
    return "".join(parts)


def _hide_all_but_last_four(chain: str) -> str:
    """``chain`` (digits and separators) with every digit but the last four as ``*``."""
    cut = len(chain)
    seen = 0
    while seen < 4:
        cut -= 1
        if chain[cut] in _DIGIT_VALUE:
            seen += 1
    return chain[:cut].translate(_HIDE) + chain[cut:]


# ---------------------------------------------------------------------------------------------
# The general scanner (Rust's `atom_at`, `each_chain`, `chain_at`): any text
# ---------------------------------------------------------------------------------------------


def _mask_scanned(text: str) -> str | None:
    """:func:`mask_pans` through the general scanner."""
    chars = None
    for pos, windows in _scan(text):
        if chars is None:
            chars = list(text)
        for first, last, merged in windows:
            for k in range(first, last + 1 if merged else last - 3):
                chars[pos[k]] = "*"
    return None if chars is None else "".join(chars)


def _scan(text: str) -> list[tuple[list[int], list[Window]]]:
    """Each chain that holds a PAN: where its digits are, and its windows."""
    out = []
    n = len(text)
    i = 0
    while i < n:
        # A chain starts at a digit; escape sequences are read whole, so that their
        # parameters are not taken for digits.
        m = _CHAIN_OR_ESCAPE.search(text, i)
        if m is None:
            break
        i = m.start()
        atom, after = _atom_at(text, i)
        if atom != _DIGIT:
            i = after
            continue
        parts, joined, count, i = _chain_at(text, i)
        if count < MIN_DIGITS:
            continue
        pos, digits, groups = _digits_of(text, parts, joined)
        windows = _windows(text, parts[0][0], parts[-1][1], digits, groups)
        if windows:
            out.append((pos, windows))
    return out


def _atom_at(text: str, i: int) -> tuple[int, int]:
    """The atom at ``i`` (Rust's ``atom_at``) and the index after it."""
    if i >= len(text):
        return _OTHER, i + 1
    c = text[i]
    if c < "\x80":
        if "0" <= c <= "9":
            return _DIGIT, i + 1
        if c in _ASCII_SEPARATORS:
            return _SEPARATOR, i + 1
        if c == "\x1b":
            return _escape_at(text, i)
        return (_INVISIBLE if _INVISIBLE_CHAR.match(c) else _OTHER), i + 1
    if c == "\x9b":  # the 8-bit CSI introducer: its parameters are not digits either
        atom, after = _sequence_end(text, i, i + 1, 0x3F, 0x40, i + MAX_ESCAPE - 1)
        return (_OTHER, i + 1) if atom == _OTHER else (atom, after)
    if c in _UNICODE_SEPARATORS:
        return _SEPARATOR, i + 1
    if _INVISIBLE_CHAR.match(c):
        return _INVISIBLE, i + 1
    return (_DIGIT if c in _DIGIT_VALUE else _OTHER), i + 1


def _escape_at(text: str, i: int) -> tuple[int, int]:
    """The escape sequence at ``text[i] == ESC`` (Rust's ``escape_at``): CSI, an OSC
    introducer with its selector, or ESC, intermediates and a final byte."""
    n = len(text)
    limit = min(n, i + MAX_ESCAPE)
    second = text[i + 1] if i + 1 < n else ""
    if second == "]":
        # OSC: the selector (`0;` title, `8;` hyperlink) goes with the introducer.
        j = i + 2
        while j < limit and "0" <= text[j] <= "9":
            j += 1
        if limit <= j < n:
            return _OTHER, i + 1
        if j >= n:
            return _CUT, n
        return _INVISIBLE, j + 1 if text[j] == ";" else j
    csi = second == "["
    middle_hi, last_lo = (0x3F, 0x40) if csi else (0x2F, 0x30)
    return _sequence_end(text, i, i + 1 + csi, middle_hi, last_lo, i + MAX_ESCAPE)


def _sequence_end(
    text: str, i: int, j: int, middle_hi: int, last_lo: int, end: int
) -> tuple[int, int]:
    """The end of an escape sequence at ``i`` whose introducer ends at ``j`` (Rust's
    ``sequence_end``): characters 0x20..``middle_hi``, then one ``last_lo``..0x7E, before
    ``end`` (``MAX_ESCAPE`` bytes from ``i`` in Rust's UTF-8)."""
    n = len(text)
    limit = min(n, end)
    while j < limit:
        b = ord(text[j])
        if 0x20 <= b <= middle_hi:
            j += 1
        elif last_lo <= b <= 0x7E:
            return _INVISIBLE, j + 1
        else:
            return _OTHER, i + 1
    return (_CUT, n) if j >= n else (_OTHER, i + 1)


def _chain_at(text: str, start: int) -> tuple[list[tuple[int, int]], list[bool], int, int]:
    """The chain whose first digit is at ``start``: its plain parts (``(start, end)`` of each
    stretch of digits and short separator runs, found by a regex), whether each gap between
    them joins groups (holds invisibles only), its number of digits, and where the search
    for the next chain goes on. Only the gaps with invisibles are read atom by atom."""
    n = len(text)
    parts = []
    joined = []
    count = 0
    i = start
    while True:  # a plain part, then the gap after it
        part_start = i
        i = end = _PLAIN_PART.match(text, i).end()
        parts.append((part_start, end))
        count += end - part_start - len(_SEPARATOR_CHAR.findall(text, part_start, end))
        separators = invisibles = 0
        while True:
            if i >= n:
                return parts, joined, count, n
            atom, after = _atom_at(text, i)
            if atom == _DIGIT:
                joined.append(separators == 0)
                break
            if atom == _SEPARATOR and separators < MAX_GAP:
                separators += 1
            elif atom == _INVISIBLE and invisibles < MAX_GAP_INVISIBLES:
                invisibles += 1
            elif atom == _CUT:
                return parts, joined, count, n
            else:  # no digit was skipped: the next chain starts after this
                return parts, joined, count, i
            i = after


def _digits_of(
    text: str, parts: list[tuple[int, int]], joined: list[bool]
) -> tuple[list[int], str, list[int]]:
    """A chain's digits: their positions, their values as ASCII digits, and the groups'
    lengths (separators split groups, invisibles do not)."""
    pos: list[int] = []
    values = []
    groups: list[int] = []
    for k, (part_start, part_end) in enumerate(parts):
        for g, m in enumerate(_GROUP.finditer(text, part_start, part_end)):
            first, end = m.span()
            pos += range(first, end)
            values.append(m.group())
            if g == 0 and k > 0 and joined[k - 1]:
                groups[-1] += end - first
            else:
                groups.append(end - first)
    return pos, "".join(values).translate(_TO_ASCII), groups


# ---------------------------------------------------------------------------------------------
# The window search (Rust's `search_chain`)
# ---------------------------------------------------------------------------------------------


def _windows(text: str, start: int, end: int, digits: str, groups: list[int]) -> list[Window]:
    """The PANs of the chain ``text[start:end]`` (Rust's ``search_chain``), whose ``digits``
    (as ASCII) come in groups of the lengths ``groups``, in order: none in an IBAN or a UPS
    number; the whole chain if it is one; else the windows, none from the first digit after
    ``+``."""
    after_plus = start > 0 and text[start - 1] == "+"
    if _may_be_part_of_an_id(text, start) and _part_of_an_id(text, start, end):
        return []
    count = len(digits)
    # 13 to 19 digits: the chain as a whole first.
    if (
        count <= MAX_DIGITS
        and not after_plus
        and _scheme_lengths(digits[:4]) >> count & 1
        and _luhn(digits)
        and _grouped_like_a_card(groups)
    ):
        return [(0, count - 1, False)]
    return _search_windows(digits, groups, after_plus)


def _search_windows(digits: str, groups: list[int], after_plus: bool) -> list[Window]:
    """Windows of 13 to 19 digits that pass Luhn and fit a scheme, merged where they overlap.

    Only the windows that Rust's ``search_windows_ending_at`` allows are tried: anywhere in a
    group of 26 digits or more; in a shorter group, the one from its first digit after its
    leading zeros to its end (one that starts on a zero fits no scheme); whole groups grouped
    like a card (each but the last of four digits or more, the last of three or more). They
    are pushed in Rust's order: by last digit, then longest first.
    """
    passed = []  # (last, first) of each window that passes
    count = len(groups)
    start = 0  # of group g
    for g, length in enumerate(groups):
        if length < 4:  # holds no window and starts none (most groups of digit soup)
            start += length
            continue
        if length >= MIN_DIGITS:
            end = start + length
            if length >= MIN_SEARCHED_RUN:
                passed += _windows_in_run(digits, start, end, after_plus)
            else:
                first = end - len(digits[start:end].lstrip("0"))
                size = end - first
                if MIN_DIGITS <= size <= MAX_DIGITS and not (first == 0 and after_plus):
                    window = digits[first:end]
                    if _scheme_lengths(window[:4]) >> size & 1 and _luhn(window):
                        passed.append((end - 1, first))
        # Whole groups from this one: they share its first four digits, so its lengths that
        # fit a scheme are known before any is tried.
        fits = _SCHEMES_BY_TWO[digits[start : start + 2]]  # _scheme_lengths, inlined: hot
        if fits < 0:
            fits = _SCHEMES_BY_FOUR[digits[start : start + 4]]
        if fits and not (start == 0 and after_plus):
            total = length
            for b in range(g + 1, count):
                size = groups[b]
                total += size
                if total > MAX_DIGITS:
                    break
                if fits >> total & 1 and size >= 3 and _luhn(digits[start : start + total]):
                    passed.append((start + total - 1, start))
                if size < 4:
                    break
        start += length
    if not passed:
        return []
    found: list[Window] = []
    for last, first in sorted(passed):
        _push_window(found, first, last)
    return found


def _windows_in_run(digits: str, start: int, end: int, after_plus: bool) -> list[tuple[int, int]]:
    """``(last, first)`` of every window in the run ``digits[start:end]`` (26 digits or more)
    that passes Luhn and fits a scheme."""
    even, odd = _luhn_prefix_sums(digits[start:end])
    passed = []
    for last in range(MIN_DIGITS - 1, end - start):
        sums = odd if last & 1 else even
        after = sums[last + 1]
        for first in range(max(0, last + 1 - MAX_DIGITS), last + 2 - MIN_DIGITS):
            length = last + 1 - first
            if (
                (after - sums[first] - 48 * length) % 10 == 0
                and not (first + start == 0 and after_plus)
                and _scheme_lengths(digits[start + first : start + first + 4]) >> length & 1
            ):
                passed.append((start + last, start + first))
    return passed


def _push_window(found: list[Window], first: int, last: int) -> None:
    """Adds a window; one that overlaps the last ones found merges with them."""
    merged = False
    while found and first <= found[-1][1]:
        prev_first, prev_last, _ = found.pop()
        first = min(first, prev_first)
        last = max(last, prev_last)
        merged = True
    found.append((first, last, merged))


def _grouped_like_a_card(groups: list[int]) -> bool:
    """Every group of four digits or more, the last of three or more."""
    return groups[-1] >= 3 and min(groups[:-1], default=4) >= 4


def _luhn(digits: str) -> bool:
    """Luhn over ``digits``, non-empty ASCII digits: from the right, odd positions as they
    are, even ones doubled; summing ASCII codes (minus ``'0'`` per digit) keeps it in C."""
    plain = digits[-1::-2].encode()
    doubled = digits[-2::-2].translate(_DOUBLE).encode()
    return (sum(plain) + sum(doubled) - 48 * len(digits)) % 10 == 0


def _luhn_prefix_sums(digits: str) -> tuple[list[int], list[int]]:
    """Rust's ``Slot::sums`` for every digit: ``sums[p][k]`` is the Luhn sum of the first
    ``k`` digits with digit ``i`` doubled when ``i % 2 != p``, plus 48 per digit (ASCII
    codes). A window ``first..=last`` passes Luhn when ``sums[last % 2]`` grows by a
    multiple of 10 (after taking the 48s off) over it."""
    plain = digits.encode()
    doubled = digits.translate(_DOUBLE).encode()
    even = bytearray(plain)
    even[1::2] = doubled[1::2]
    odd = bytearray(plain)
    odd[0::2] = doubled[0::2]
    return list(accumulate(even, initial=0)), list(accumulate(odd, initial=0))


# ---------------------------------------------------------------------------------------------
# Identifiers that are not cards: IBANs, UPS tracking numbers
# ---------------------------------------------------------------------------------------------


def _may_be_part_of_an_id(text: str, start: int) -> bool:
    """The quick test before :func:`_part_of_an_id`, false for nearly every chain: right
    before it there must be a capital (``1Z``, an IBAN's letters) or a digit, or a single
    space after one (an IBAN's groups)."""
    if start == 0:
        return False
    before = text[start - 1]
    if before == " " and start >= 2:
        before = text[start - 2]
    return "A" <= before <= "Z" or "0" <= before <= "9"


def _part_of_an_id(text: str, start: int, end: int) -> bool:
    """Whether the chain ``text[start:end]`` is the digits of an IBAN (letters, digits and
    single spaces back to a word start where ``CCdd`` begins, mod-97 check over it and the
    chain) or of a UPS tracking number (``1Z`` glued on)."""
    if start >= 2 and text[start - 2 : start] == "1Z" and _word_start(text, start - 2):
        return True
    at = start
    while at > 0 and start - at < 40:
        c = text[at - 1]
        single_space = c == " " and at >= 2 and text[at - 2] != " "
        if not ("A" <= c <= "Z" or "0" <= c <= "9" or single_space):
            break
        at -= 1
    # An IBAN starts with two capital letters at a word start.
    return any(
        "A" <= text[k] <= "Z" and _word_start(text, k) and _iban_at(text, k, end)
        for k in range(at, start)
    )


def _word_start(text: str, at: int) -> bool:
    return at == 0 or not (text[at - 1].isascii() and text[at - 1].isalnum())


def _iban_at(text: str, at: int, end: int) -> bool:
    """Whether ``text[at:end]`` is an IBAN (single spaces allowed between its groups)."""
    head = text[at : at + 4]
    if not (
        len(head) == 4
        and "A" <= head[0] <= "Z"
        and "A" <= head[1] <= "Z"
        and "0" <= head[2] <= "9"
        and "0" <= head[3] <= "9"
    ):
        return False
    body = text[at + 4 : end]
    if not _IBAN_BODY.fullmatch(body):
        return False
    body = body.replace(" ", "")
    if not 15 <= 4 + len(body) <= 34:
        return False
    # The country and check digits move behind the account number; letters count 10 to 35.
    number = "".join(str(ord(c) - 55) if c >= "A" else c for c in body + head[:2]) + head[2:]
    return int(number) % 97 == 1


# ---------------------------------------------------------------------------------------------
# Card schemes
# ---------------------------------------------------------------------------------------------


def iin_fits(lead: int, length: int) -> bool:
    """Whether a card number of ``length`` digits may start with the four digits ``lead``
    (the table is in the crate docs of ``policy-sdk/pan/src/lib.rs``).

    >>> iin_fits(4111, 16), iin_fits(4111, 15), iin_fits(3782, 15), iin_fits(7071, 16)
    (True, False, True, False)
    """
    two, three = lead // 100, lead // 10
    match lead // 1000:
        case 1:
            return length == 15
        case 2:
            return (2221 <= lead <= 2720 and length == 16) or (
                2200 <= lead <= 2204 and length >= 16
            )
        case 3:
            return (
                (two in (34, 37) and length == 15)
                or ((300 <= three <= 305 or two in (36, 38, 39)) and length >= 14)
                or (3528 <= lead <= 3589 and length >= 16)
            )
        case 4:
            return length in (13, 16, 19)
        case 5:
            return two == 50 or 56 <= two <= 59 or length == 16
        case 6:
            return True
        case 8 | 9:
            return length == 16
        case _:
            return False



def _scheme_tables() -> tuple[dict[str, int], dict[str, int]]:
    """``iin_fits`` as two lookup tables of length masks (bit ``n``: a card of ``n`` digits
    may start so): by two leading digits where those decide, else -1 and by four. All
    10,000 four-digit keys would cost about 1 MiB of the instance's memory."""
    masks: dict[int, int] = {}  # one int object per distinct mask
    by_four = {}
    for lead in range(10_000):
        mask = sum(1 << n for n in range(MIN_DIGITS, MAX_DIGITS + 1) if iin_fits(lead, n))
        by_four[f"{lead:04d}"] = masks.setdefault(mask, mask)
    by_two = {}
    for two in range(100):
        distinct = {by_four[f"{two:02d}{rest:02d}"] for rest in range(100)}
        by_two[f"{two:02d}"] = distinct.pop() if len(distinct) == 1 else -1
    # A new dict: one that entries were deleted from keeps its size.
    return by_two, {lead: mask for lead, mask in by_four.items() if by_two[lead[:2]] < 0}


_SCHEMES_BY_TWO, _SCHEMES_BY_FOUR = _scheme_tables()  # 22-27, 30 and 35 need four digits


def _scheme_lengths(lead: str) -> int:
    """The lengths (bit ``n`` for ``n`` digits) of the cards that may start with the four
    ASCII digits ``lead``: ``_scheme_lengths("4111") >> 16 & 1`` is ``iin_fits(4111, 16)``."""
    lengths = _SCHEMES_BY_TWO[lead[:2]]
    return lengths if lengths >= 0 else _SCHEMES_BY_FOUR[lead]

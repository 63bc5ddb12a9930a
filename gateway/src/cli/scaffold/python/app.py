"""`__POLICY_NAME__`: a Warden policy in Python (componentize-py).

Edit ``check`` and ``mask_rows`` below; keep them pure functions of their inputs. As written:

- SQL ``DROP`` is denied;
- a ``SELECT`` is answered ``mask``: its result rows then go through ``mask_rows``, which
  hides the ``email`` column (any case) and leaves every other cell alone;
- everything else (other SQL, shell commands, HTTP requests) is allowed.

Build with ``./build.sh``; test with ``warden policy test __POLICY_NAME__.wasm cases.toml``.

Binding conventions (componentize-py): the WIT's types live in ``wit_world.imports.types``;
a variant case is a class, ``Command_Sql(value=...)``, ``Verdict_Deny(reason)``; WIT names
become snake_case (``mask-rows`` -> ``mask_rows``, ``client-addr`` -> ``client_addr``);
``option<T>`` is the value or None; to return ``err`` from a ``result``, raise ``Err(...)``.
The world's ``log`` import is ``wit_world.log(message)``.

The module runs in the gateway's sandbox: no files, sockets, environment or real clock.
Module-level code runs once, at *build* time (componentize-py snapshots the initialised
interpreter): build tables there, never do I/O there.
"""

from __future__ import annotations

import wit_world
from componentize_py_types import Err
from wit_world.imports import types as wit  # the WIT interface `types` (not the stdlib module)

#: Statement kinds refused outright (``sql.kind`` is lower-case: select, insert, drop, ...).
DENIED_KINDS = frozenset({"drop"})
#: Result columns whose values are hidden, compared lower-cased.
MASKED_COLUMNS = frozenset({"email"})
#: What a hidden value becomes.
HIDDEN = "***"


class WitWorld(wit_world.WitWorld):
    """The ``policy`` world's exports (componentize-py names the world's class ``WitWorld``)."""

    def init(self, config: str) -> None:
        # The config from warden.toml (a TOML table arrives as JSON). Parse it here and keep
        # the result in module state; raise Err("why") to refuse it.
        if config.strip():
            raise Err("__POLICY_NAME__ takes no config")

    def check(self, session: wit.Session, command: wit.Command) -> wit.Verdict:
        if isinstance(command, wit.Command_Sql):
            kind = command.value.kind
            if kind in DENIED_KINDS:
                return wit.Verdict_Deny(f"{kind.upper()} is not allowed here")
            if kind == "select":
                return wit.Verdict_Mask()
        return wit.Verdict_Allow()

    def mask_rows(
        self,
        session: wit.Session,
        columns: list[wit.Column],
        rows: list[list[str | None]],
    ) -> list[wit.CellEdit]:
        # Return only the cells to change. `rule` names the rule in the audit log, which
        # records column, rule and count, never the value.
        hidden = [c for c, column in enumerate(columns) if column.name.lower() in MASKED_COLUMNS]
        return [
            wit.CellEdit(row=r, column=c, value=HIDDEN, rule="email")
            for r, row in enumerate(rows)
            for c in hidden
            if c < len(row) and row[c] is not None
        ]

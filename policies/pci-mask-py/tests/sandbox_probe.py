"""A deliberately misbehaving Python policy, for ``gateway/tests/lang_python.rs``.

It checks from the inside that the gateway's sandbox grants a Python policy nothing, and that
the host stops one that never returns. Its ``init`` config picks the behaviour:

- ``check:sandbox`` -- ``check`` tries to read a file, list a directory, read the
  environment, open a socket, read the clock and the process arguments, and denies with a
  report such as ``file=Err(...) dir=Err(...) env=0 socket=Err(...) clock=0 ...``.
- ``check:loop`` / ``mask:loop`` / ``init:loop`` -- never return (stopped by the deadline).
- ``check:alloc`` -- allocate until something gives (stopped by the memory cap).

Nothing here runs at import time: module-level code runs at *build* time, inside
componentize-py's pre-initialisation, not in the gateway.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable

import wit_world
from componentize_py_types import Err
from wit_world.imports import types as wit

_mode: str | None = None


def _attempt(what: Callable[[], object]) -> str:
    """``Ok(repr)`` or ``Err(ExceptionName: message)``, shortened, for the report."""
    try:
        return f"Ok({what()!r:.80})"
    except BaseException as e:  # noqa: BLE001 -- the point is to report any failure
        return f"Err({type(e).__name__}: {e!s:.80})"


def _read_file() -> str:
    with open("/etc/passwd", encoding="utf-8") as f:
        return f.read(64)


def _socket() -> str:
    import socket  # imported here: the attempt itself is what is probed

    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(0.1)
    s.connect(("127.0.0.1", 22))
    return "connected"


def _report() -> str:
    parts = [
        f"file={_attempt(_read_file)}",
        f"dir={_attempt(lambda: os.listdir('/'))}",
        f"cwd={_attempt(os.getcwd)}",
        f"env={len(os.environ)}",
        f"env_keys={sorted(os.environ)[:8]}",
        f"getenv_home={os.getenv('HOME')!r}",
        f"socket={_attempt(_socket)}",
        f"clock={int(time.time())}",
        f"argv={sys.argv!r}",
        f"py={sys.version.split()[0]}",
    ]
    return " ".join(parts)


def _spin() -> None:
    n = 0
    while True:
        n += 1


class WitWorld(wit_world.WitWorld):
    def init(self, config: str) -> None:
        global _mode
        if config == "init:loop":
            _spin()
        _mode = config

    def check(self, session: wit.Session, command: wit.Command) -> wit.Verdict:
        if _mode == "check:sandbox":
            return wit.Verdict_Deny(_report())
        if _mode == "check:loop":
            _spin()
        if _mode == "check:alloc":
            hoard: list[bytes] = []
            while True:
                hoard.append(bytes(1 << 20))
        return wit.Verdict_Mask()

    def mask_rows(
        self,
        session: wit.Session,
        columns: list[wit.Column],
        rows: list[list[str | None]],
    ) -> list[wit.CellEdit]:
        if _mode == "mask:loop":
            _spin()
        raise Err(f"sandbox probe: mode {_mode!r} masks nothing")

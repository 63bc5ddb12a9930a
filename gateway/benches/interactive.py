#!/usr/bin/env python3
"""gateway/benches/interactive.py — interactive round trips of one terminal session.

    interactive.py N -- ssh ARGS...

Runs `ssh -tt ARGS` on a pseudo-terminal (as a person's terminal would), waits for a shell
prompt, then measures N times each:
  echo:  a key typed at the prompt until the terminal shows it (the host's line editor
         echoes it directly; through Warden the gateway's editor does);
  line:  Enter on `echo r<i>-$((6*7))` until its output `r<i>-42` shows (through Warden the
         command is judged, audited and sent whole first), then waits for the next prompt.
Prints one line: `echo_p50_ms echo_p99_ms line_p50_ms line_p99_ms` (milliseconds). Needs only
the Python standard library; called by gateway/benches/ssh.sh.
"""
import os
import pty
import select
import statistics
import sys
import time


def read_until(fd, pred, buf, timeout=10.0):
    """Read from fd into buf until pred(buf) holds; returns the time it held."""
    end = time.monotonic() + timeout
    while not pred(buf):
        left = end - time.monotonic()
        if left <= 0:
            raise TimeoutError(bytes(buf[-200:]))
        r, _, _ = select.select([fd], [], [], left)
        if r:
            try:
                data = os.read(fd, 65536)
            except OSError:
                raise TimeoutError(b"closed: " + bytes(buf[-200:]))
            if not data:
                raise TimeoutError(b"eof: " + bytes(buf[-200:]))
            buf.extend(data)
    return time.monotonic()


def after(buf, mark, endings):
    """Whether one of `endings` shows in buf after `mark` (the next prompt)."""
    at = buf.find(mark)
    return at >= 0 and any(e in buf[at + len(mark):] for e in endings)


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def main():
    n = int(sys.argv[1])
    argv = sys.argv[sys.argv.index("--") + 1:]
    pid, fd = pty.fork()
    if pid == 0:
        os.execvp(argv[0], argv)
    buf = bytearray()
    read_until(fd, lambda b: b"$ " in b or b"# " in b, buf, 30)
    time.sleep(0.5)
    echoes, lines = [], []
    for i in range(n):
        buf.clear()
        t0 = time.monotonic()
        os.write(fd, b"z")
        t1 = read_until(fd, lambda b: b"z" in b, buf)
        echoes.append((t1 - t0) * 1000)
        os.write(fd, b"\x15")  # Ctrl-U: the line is empty again
        time.sleep(0.05)
        buf.clear()
        cmd = f"echo r{i}-$((6*7))".encode()
        os.write(fd, cmd)
        read_until(fd, lambda b: b"((6*7))" in b, buf)
        buf.clear()
        t0 = time.monotonic()
        os.write(fd, b"\r")
        want = f"r{i}-42".encode()
        t1 = read_until(fd, lambda b: want in b, buf)
        lines.append((t1 - t0) * 1000)
        read_until(fd, lambda b: after(b, want, (b"$ ", b"# ")), buf)
        time.sleep(0.05)
    os.write(fd, b"exit\r")
    try:
        read_until(fd, lambda b: False, bytearray(), 3)
    except TimeoutError:
        pass
    os.waitpid(pid, 0)
    print(
        f"{statistics.median(echoes):.2f} {pct(echoes, 0.99):.2f} "
        f"{statistics.median(lines):.2f} {pct(lines, 0.99):.2f}"
    )


if __name__ == "__main__":
    main()

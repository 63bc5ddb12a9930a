#!/usr/bin/env python3
"""Client matrix, psycopg 3: text and binary cursors, server-prepared statements
(prepare=True, run 7 times), a server-side named cursor, executemany and COPY.

Usage: psycopg3.py --dsn DSN --mode direct|masked [--denied-sql SQL]
"""

import sys

import psycopg

from matrix_common import (SELECT_CARDS, SELECT_TYPES, TYPE_COLUMNS, Checker,
                           expected_cards, expected_types, parse_args)

FAMILY = "psycopg3"
SCRATCH = f"matrix_scratch_{FAMILY}"
REPEAT = 7  # past psycopg's own prepare threshold (5) too


def types_expected(binary):
    want = expected_types()
    if binary:
        # psycopg has no binary loader for macaddr: a binary cursor returns its 6 raw bytes.
        want[0]["c_macaddr"] = bytes.fromhex("08002b010203")
    return want


def workload(conn, ck):
    """Parameterised query, transaction commit/rollback, executemany and COPY."""
    with conn.cursor() as cur:
        cur.execute(f"drop table if exists {SCRATCH}")
        cur.execute(f"create table {SCRATCH} (id int primary key, label text, amount numeric(10,2))")
        conn.commit()

        cur.execute("select holder, card_id from matrix_cards where id = %s", (3,))
        row = cur.fetchone()
        ck.eq("parameterised query", list(row), [expected_cards("direct")[2]["holder"],
                                                 expected_cards("direct")[2]["card_id"]])

        cur.execute(f"insert into {SCRATCH} values (%s, %s, %s)", (1, "committed", "1.50"))
        conn.commit()
        cur.execute(f"insert into {SCRATCH} values (%s, %s, %s)", (2, "rolled back", "2.50"))
        conn.rollback()
        cur.execute(f"select id, label from {SCRATCH} order by id")
        ck.eq("transaction: committed row kept, rolled-back row gone", [list(r) for r in cur],
              [[1, "committed"]])

        cur.executemany(f"insert into {SCRATCH} values (%s, %s, %s)",
                        [(i, f"many {i}", f"{i}.25") for i in range(10, 60)])
        with cur.copy(f"copy {SCRATCH} (id, label, amount) from stdin") as copy:
            for i in range(100, 150):
                copy.write_row((i, f"copy {i}", f"{i}.75"))
        conn.commit()
        cur.execute(f"select count(*), sum(amount)::text from {SCRATCH}")
        ck.eq("executemany + COPY rows", list(cur.fetchone()), [101, "8001.50"])


def read_all(conn, ck, mode, what, binary=False, prepare=None):
    with conn.cursor(binary=binary) as cur:
        cur.execute(SELECT_TYPES, prepare=prepare)
        ck.rows(f"{what} matrix_types", cur.fetchall(), types_expected(binary), TYPE_COLUMNS)
        cur.execute(SELECT_CARDS, prepare=prepare)
        ck.cards(f"{what} matrix_cards", cur.fetchall(), mode)
    conn.commit()


def prepared(conn, ck, mode, binary):
    what = "prepared binary" if binary else "prepared"
    cards = expected_cards(mode)
    with conn.cursor(binary=binary) as cur:
        for i in range(REPEAT):
            want = cards[i % len(cards)]
            cur.execute(f"{SELECT_CARDS.replace(' order by id', '')} where id = %s",
                        (want["id"],), prepare=True)
            ck.cards(f"{what} run {i + 1} matrix_cards", cur.fetchall(), mode, [want])
        for i in range(REPEAT):
            cur.execute(SELECT_TYPES, prepare=True)
            ck.rows(f"{what} run {i + 1} matrix_types", cur.fetchall(),
                    types_expected(binary), TYPE_COLUMNS)
        # prepare=True must have prepared them on the server, not just run them.
        cur.execute("select count(*) from pg_prepared_statements where not from_sql")
        n = cur.fetchone()[0]
        ck.true(f"{what}: statements prepared on the server", n >= 2,
                f"{n} in pg_prepared_statements")
    conn.commit()


def named_cursor(conn, ck, mode):
    with conn.cursor(name="matrix_named") as cur:
        cur.itersize = 2
        cur.execute(SELECT_CARDS)
        rows = cur.fetchmany(2) + cur.fetchmany(2)
        ck.cards("named cursor matrix_cards", rows, mode)
    with conn.cursor(name="matrix_named_types") as cur:
        cur.execute(SELECT_TYPES)
        ck.rows("named cursor matrix_types", list(cur), expected_types(), TYPE_COLUMNS)
    conn.commit()


def denied(conn, ck, sql):
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
        ck.fail(f"denied sql ran without error: {sql}")
    except psycopg.Error as e:
        ck.true("denied sql: SQLSTATE 42501", e.sqlstate == "42501",
                f"got SQLSTATE {e.sqlstate}: {e}")
    conn.rollback()
    with conn.cursor() as cur:
        cur.execute("select 1")
        ck.eq("select 1 after the denial", cur.fetchone()[0], 1)
    conn.commit()


def main():
    args = parse_args(FAMILY)
    ck = Checker(FAMILY)
    with psycopg.connect(args.dsn) as conn:
        workload(conn, ck)
        read_all(conn, ck, args.mode, "text")
        ck.ok("text")
        read_all(conn, ck, args.mode, "binary", binary=True)
        ck.ok("binary")
        prepared(conn, ck, args.mode, binary=False)
        prepared(conn, ck, args.mode, binary=True)
        ck.ok("prepared")
        named_cursor(conn, ck, args.mode)
        ck.ok("named-cursor")
        if args.denied_sql:
            denied(conn, ck, args.denied_sql)
            ck.ok("denied")
        with conn.cursor() as cur:
            cur.execute(f"drop table {SCRATCH}")
        conn.commit()


if __name__ == "__main__":
    try:
        main()
    except (psycopg.Error, OSError) as e:
        print(f"FAIL {FAMILY}: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)

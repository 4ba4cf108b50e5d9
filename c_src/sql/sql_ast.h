/* sql_ast.h - the parse tree of a rule SQL statement (spec/rule-sql.md §2).
 * Built by sql_parse into the rule's arena; immutable afterwards, so one
 * compiled statement is evaluated concurrently by any number of threads. */
#ifndef EC_SQL_AST_H
#define EC_SQL_AST_H

#include <stdbool.h>
#include <stdint.h>

#include "../core/value.h"

typedef struct sql_node sql_node;
struct sql_func;

typedef enum seg_kind {
    SEG_KEY,       /* .name, ."quoted", .'str', .1 (a key, not an index) */
    SEG_INDEX,     /* [n] / [-n]; in alias targets [0] = prepend, [-0] = append */
    SEG_INDEX_VAR, /* [path], resolved against the root of the data walked */
} seg_kind;

typedef struct sql_seg {
    uint8_t kind;  /* seg_kind */
    bool neg_zero; /* SEG_INDEX written as [-0] */
    uint32_t klen; /* SEG_KEY */
    const char *key;
    int64_t index; /* SEG_INDEX */
    sql_node *var; /* SEG_INDEX_VAR: an N_PATH */
} sql_seg;

typedef struct sql_path {
    sql_seg *segs;
    uint32_t n;
} sql_path;

typedef enum node_kind {
    N_CONST, /* literal (string, int, float, true/false) */
    N_PATH,  /* variable or path */
    N_LIST,  /* [e1, e2, ...] */
    N_RANGE, /* [lo..hi] alone: generated list */
    N_SLICE, /* path[lo..hi] */
    N_CALL,
    N_NEG,   /* unary minus */
    N_ARITH, /* + - * / div mod (op = token) */
    N_CMP,   /* = != < > <= >= =~ ~= (op = token) */
    N_AND,
    N_OR,
    N_NOT,
    N_IN, /* negated: NOT IN */
    N_CASE,
} node_kind;

struct sql_node {
    uint8_t kind; /* node_kind */
    uint8_t op;   /* sql_tok of the operator for N_ARITH / N_CMP */
    bool negated; /* N_IN */
    uint32_t pos; /* byte offset of the node's first token (errors) */
    uint32_t end; /* byte offset just after its last token (source text) */
    union {
        value constant;
        sql_path path;
        struct {
            sql_node **items;
            uint32_t n;
        } list;
        struct {
            int64_t lo, hi;
        } range;
        struct {
            sql_node *of; /* N_PATH */
            int64_t lo, hi;
        } slice;
        struct {
            const char *name;
            uint32_t nlen;
            const struct sql_func *fn; /* NULL: unknown (an error when evaluated) */
            sql_node **args;
            uint32_t nargs;
        } call;
        struct {
            sql_node *l, *r;
        } bin;
        sql_node *operand; /* N_NEG, N_NOT */
        struct {
            sql_node *subject; /* N_IN */
            sql_node **items;
            uint32_t n;
        } in;
        struct {
            sql_node *subject; /* NULL for the searched form */
            sql_node **whens;
            sql_node **thens;
            uint32_t n;
            sql_node *els; /* NULL: undefined */
        } kase;
    } u;
};

typedef struct sql_field {
    bool star;
    sql_node *expr;
    sql_path target; /* where the value is written (alias, or derived); n = 0 for * */
    bool has_alias;  /* written with an alias (AS x or bare x) */
} sql_field;

typedef struct sql_from {
    const char *topic;
    uint32_t len;
    bool is_event; /* starts with "$events/" */
} sql_from;

typedef struct sql_stmt {
    bool foreach;
    sql_field *fields;
    uint32_t nfields;
    bool has_do;
    sql_field *do_fields;
    uint32_t ndo;
    sql_node *incase; /* NULL: none */
    sql_node *where;  /* NULL: none */
    sql_from *from;
    uint32_t nfrom;
    const char *text; /* the cleaned statement */
} sql_stmt;

#endif

/* sql_lex.h - tokenizer for EMQX rule SQL (spec/rule-sql.md §1).
 *
 * The whole statement is tokenized up front into an arena array. Lexing is
 * context-free as in EMQX's leex lexer: keywords are case-insensitive,
 * identifiers case-sensitive, `div`/`mod` lowercase only, `[1..4]` one token,
 * strings and quoted names have all leading/trailing quotes stripped. */
#ifndef EC_SQL_LEX_H
#define EC_SQL_LEX_H

#include <stddef.h>
#include <stdint.h>

#include "../core/arena.h"
#include "../core/error.h"

#define SQL_MAX_BYTES (64 * 1024) /* longest accepted statement */

typedef enum sql_tok {
    T_EOF = 0,
    T_NAME,   /* identifier */
    T_QNAME,  /* "double quoted" name */
    T_STRING, /* 'single quoted' */
    T_INT,
    T_FLOAT,
    T_RANGE, /* [lo..hi] */
    /* keywords */
    T_AND,
    T_AS,
    T_CASE,
    T_IF,
    T_ELSE,
    T_ELSIF,
    T_FROM,
    T_IN,
    T_NOT,
    T_OR,
    T_SELECT,
    T_WHEN,
    T_THEN,
    T_FOREACH,
    T_INCASE,
    T_END,
    T_DO,
    T_WHERE,
    T_DIV, /* lowercase only */
    T_MOD,
    /* operators and punctuation */
    T_EQ,
    T_NE, /* != or <> */
    T_LT,
    T_GT,
    T_LE,
    T_GE,
    T_MATCH,    /* =~ */
    T_TILDE_EQ, /* ~= (lexed; has no runtime meaning) */
    T_MINUS,
    T_PLUS,
    T_STAR,
    T_SLASH,
    T_LPAREN,
    T_RPAREN,
    T_LBRACKET,
    T_RBRACKET,
    T_COMMA,
    T_DOT,
} sql_tok;

typedef struct sql_token {
    sql_tok type;
    uint32_t pos;     /* byte offset in the cleaned statement */
    uint32_t len;     /* bytes of the token in the statement */
    const char *text; /* NAME/QNAME/STRING: unquoted text (points into the statement) */
    uint32_t text_len;
    union {
        int64_t i;
        double f;
        struct {
            int64_t lo, hi;
        } range;
    } u;
} sql_token;

typedef struct sql_tokens {
    const char *sql; /* the cleaned statement the positions refer to */
    size_t sql_len;
    size_t base;     /* bytes trimmed from the front of the original text */
    sql_token *toks; /* ends with a T_EOF token */
    size_t n;
} sql_tokens;

/* Cleans (§1.1) and tokenizes sql into arena a. Errors carry line/column. */
ec_status sql_lex(arena *a, const char *sql, size_t len, sql_tokens *out, ec_error *err);

/* A short printable description of a token for error messages ("'FROM'",
 * "end of input", "name 'foo'"), written into buf. */
const char *sql_tok_describe(const sql_tokens *t, const sql_token *tok, char *buf, size_t n);

#endif

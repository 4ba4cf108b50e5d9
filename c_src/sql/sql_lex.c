/* sql_lex.c - rule SQL tokenizer; see sql_lex.h. */
#include "sql_lex.h"

#include "../core/utf8.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* character classes, one table (SQLite style) */
enum { C_OTHER = 0, C_SPACE = 1, C_ALPHA = 2, C_DIGIT = 4, C_IDENT_REST = 8 };
static unsigned char cclass[256];

static void init_classes(void) {
    if (cclass['a']) return;
    cclass[' '] = cclass['\t'] = cclass['\r'] = cclass['\n'] = C_SPACE;
    for (int c = 'a'; c <= 'z'; c++)
        cclass[c] = C_ALPHA | C_IDENT_REST;
    for (int c = 'A'; c <= 'Z'; c++)
        cclass[c] = C_ALPHA | C_IDENT_REST;
    for (int c = '0'; c <= '9'; c++)
        cclass[c] = C_DIGIT | C_IDENT_REST;
    cclass['_'] = cclass['$'] = cclass['@'] = cclass['~'] = C_IDENT_REST;
}

static const struct {
    const char *word;
    sql_tok tok;
} keywords[] = {
    {"and", T_AND},   {"as", T_AS},           {"case", T_CASE},     {"if", T_IF},
    {"else", T_ELSE}, {"elsif", T_ELSIF},     {"from", T_FROM},     {"in", T_IN},
    {"not", T_NOT},   {"or", T_OR},           {"select", T_SELECT}, {"when", T_WHEN},
    {"then", T_THEN}, {"foreach", T_FOREACH}, {"incase", T_INCASE}, {"end", T_END},
    {"do", T_DO},     {"where", T_WHERE},
};

static sql_tok word_token(const char *s, size_t n) {
    if (n == 3 && memcmp(s, "div", 3) == 0) return T_DIV; /* case-sensitive */
    if (n == 3 && memcmp(s, "mod", 3) == 0) return T_MOD;
    for (size_t i = 0; i < sizeof keywords / sizeof keywords[0]; i++)
        if (strlen(keywords[i].word) == n && strncasecmp(s, keywords[i].word, n) == 0)
            return keywords[i].tok;
    return T_NAME;
}

typedef struct lexer {
    arena *a;
    const char *s;
    size_t n;
    size_t base;
    const char *orig;
    ec_error *err;
    sql_token *toks;
    uint32_t count, cap;
} lexer;

static ec_status lex_fail(lexer *lx, size_t pos, const char *fmt, const char *arg) {
    char msg[200];
    snprintf(msg, sizeof msg, fmt, arg);
    ec_fail_at(lx->err, EC_EPARSE, lx->s, pos, "%s", msg);
    if (lx->err) /* "line L, column C: ..." */ {
        char full[EC_ERRMSG_MAX];
        snprintf(full, sizeof full, "syntax error at line %d, column %d: %s", lx->err->line,
                 lx->err->column, msg);
        memcpy(lx->err->msg, full, sizeof full);
    }
    return EC_EPARSE;
}

static sql_token *push(lexer *lx, sql_tok type, size_t pos, size_t len) {
    if (!ARENA_GROW(lx->a, lx->toks, lx->cap, lx->count)) return NULL;
    sql_token *t = &lx->toks[lx->count++];
    memset(t, 0, sizeof *t);
    t->type = type;
    t->pos = (uint32_t)pos;
    t->len = (uint32_t)len;
    return t;
}

/* Parses digits [sign] of s[0..n) as int64; false on overflow. */
static bool parse_i64(const char *s, size_t n, int64_t *out) {
    bool neg = false;
    size_t i = 0;
    if (i < n && (s[i] == '+' || s[i] == '-')) neg = s[i++] == '-';
    if (i == n) return false;
    uint64_t acc = 0, lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    for (; i < n; i++) {
        unsigned d = (unsigned)(s[i] - '0');
        if (d > 9 || acc > (lim - d) / 10) return false;
        acc = acc * 10 + d;
    }
    *out = neg ? (int64_t)(0 - acc) : (int64_t)acc;
    return true;
}

/* A quoted token: returns end offset (after the closing quote) or 0. */
static size_t scan_quoted(const char *s, size_t n, size_t i, char q) {
    i++; /* opening quote */
    while (i < n) {
        if (s[i] == q) {
            if (i + 1 < n && s[i + 1] == q) {
                i += 2; /* doubled quote stays in the token */
                continue;
            }
            return i + 1;
        }
        i++;
    }
    return 0;
}

/* "[int..int]" with no spaces: returns end offset or 0 */
static size_t scan_range(const char *s, size_t n, size_t i, int64_t *lo, int64_t *hi) {
    size_t j = i + 1, a0 = j;
    if (j < n && (s[j] == '+' || s[j] == '-')) j++;
    size_t d0 = j;
    while (j < n && s[j] >= '0' && s[j] <= '9')
        j++;
    if (j == d0 || j + 1 >= n || s[j] != '.' || s[j + 1] != '.') return 0;
    size_t a1 = j;
    j += 2;
    size_t b0 = j;
    if (j < n && (s[j] == '+' || s[j] == '-')) j++;
    size_t e0 = j;
    while (j < n && s[j] >= '0' && s[j] <= '9')
        j++;
    if (j == e0 || j >= n || s[j] != ']') return 0;
    if (!parse_i64(s + a0, a1 - a0, lo) || !parse_i64(s + b0, j - b0, hi)) return 0;
    return j + 1;
}

static ec_status lex_all(lexer *lx) {
    const char *s = lx->s;
    size_t n = lx->n, i = 0;
    while (i < n) {
        unsigned char c = (unsigned char)s[i];
        if (cclass[c] & C_SPACE) {
            i++;
            continue;
        }
        if (c == '-' && i + 1 < n && s[i + 1] == '-') { /* comment incl. its newline */
            const char *nl = memchr(s + i, '\n', n - i);
            if (nl) {
                i = (size_t)(nl - s) + 1;
                continue;
            }
            /* no newline: two minus tokens, as EMQX does (then a parse error) */
        }
        sql_token *t;
        if (cclass[c] & C_ALPHA) {
            size_t j = i + 1;
            while (j < n && (cclass[(unsigned char)s[j]] & C_IDENT_REST))
                j++;
            sql_tok type = word_token(s + i, j - i);
            if (!(t = push(lx, type, i, j - i))) goto oom;
            t->text = s + i;
            t->text_len = (uint32_t)(j - i);
            i = j;
            continue;
        }
        if (cclass[c] & C_DIGIT) {
            size_t j = i;
            while (j < n && s[j] >= '0' && s[j] <= '9')
                j++;
            /* APPROXNUM: [0-9]+\.?[0-9]+([eE][+-]?[0-9]+)?[fFdD]? (longest match) */
            size_t k = j;
            bool dot = false;
            if (k < n && s[k] == '.' && k + 1 < n && s[k + 1] >= '0' && s[k + 1] <= '9') {
                dot = true;
                k++;
                while (k < n && s[k] >= '0' && s[k] <= '9')
                    k++;
            }
            /* the mantissa needs two digits ("1e3" lexes as 1 and the name e3) */
            bool two_digits = dot || j - i >= 2;
            size_t m = k;
            bool expo = false;
            if (two_digits && m < n && (s[m] == 'e' || s[m] == 'E')) {
                size_t e = m + 1;
                if (e < n && (s[e] == '+' || s[e] == '-')) e++;
                if (e < n && s[e] >= '0' && s[e] <= '9') {
                    while (e < n && s[e] >= '0' && s[e] <= '9')
                        e++;
                    expo = true;
                    m = e;
                }
            }
            bool suffix =
                m < n && two_digits && (s[m] == 'f' || s[m] == 'F' || s[m] == 'd' || s[m] == 'D');
            if (dot || expo || suffix) {
                size_t end = suffix ? m + 1 : m;
                /* EMQX converts with a strict float parser that needs a '.' and no suffix */
                if (!dot || suffix)
                    return lex_fail(lx, i,
                                    "invalid number '%s' (a float needs a decimal point and no "
                                    "suffix, e.g. 1.5e3)",
                                    arena_strndup(lx->a, s + i, end - i));
                char tmp[64];
                if (end - i >= sizeof tmp) return lex_fail(lx, i, "number too long%s", "");
                memcpy(tmp, s + i, end - i);
                tmp[end - i] = '\0';
                double f = strtod(tmp, NULL);
                if (!isfinite(f)) return lex_fail(lx, i, "number out of range: %s", tmp);
                if (!(t = push(lx, T_FLOAT, i, end - i))) goto oom;
                t->u.f = f;
                i = end;
                continue;
            }
            if (!(t = push(lx, T_INT, i, j - i))) goto oom;
            if (!parse_i64(s + i, j - i, &t->u.i))
                return lex_fail(lx, i, "integer %s is outside the 64-bit range",
                                arena_strndup(lx->a, s + i, j - i));
            i = j;
            continue;
        }
        if (c == '\'' || c == '"') {
            size_t end = scan_quoted(s, n, i, (char)c);
            if (!end)
                return lex_fail(lx, i, "unterminated %s",
                                c == '\'' ? "string literal" : "quoted name");
            if (!(t = push(lx, c == '\'' ? T_STRING : T_QNAME, i, end - i))) goto oom;
            size_t a0 = i, b0 = end; /* strip all leading and trailing quotes */
            while (a0 < b0 && s[a0] == (char)c)
                a0++;
            while (b0 > a0 && s[b0 - 1] == (char)c)
                b0--;
            t->text = s + a0;
            t->text_len = (uint32_t)(b0 - a0);
            i = end;
            continue;
        }
        if (c == '[') {
            int64_t lo, hi;
            size_t end = scan_range(s, n, i, &lo, &hi);
            if (end) {
                if (!(t = push(lx, T_RANGE, i, end - i))) goto oom;
                t->u.range.lo = lo;
                t->u.range.hi = hi;
                i = end;
                continue;
            }
        }
        sql_tok type;
        size_t len = 1;
        char d = i + 1 < n ? s[i + 1] : '\0';
        switch (c) {
        case '=': type = d == '~' ? (len = 2, T_MATCH) : T_EQ; break;
        case '!':
            if (d != '=') return lex_fail(lx, i, "illegal character '%s'", "!");
            type = T_NE;
            len = 2;
            break;
        case '<':
            if (d == '>')
                type = T_NE, len = 2;
            else if (d == '=')
                type = T_LE, len = 2;
            else
                type = T_LT;
            break;
        case '>': type = d == '=' ? (len = 2, T_GE) : T_GT; break;
        case '~':
            if (d != '=') return lex_fail(lx, i, "illegal character '%s'", "~");
            type = T_TILDE_EQ;
            len = 2;
            break;
        case '-': type = T_MINUS; break;
        case '+': type = T_PLUS; break;
        case '*': type = T_STAR; break;
        case '/': type = T_SLASH; break;
        case '(': type = T_LPAREN; break;
        case ')': type = T_RPAREN; break;
        case '[': type = T_LBRACKET; break;
        case ']': type = T_RBRACKET; break;
        case ',': type = T_COMMA; break;
        case '.': type = T_DOT; break;
        default: {
            char ch[8];
            if (c >= 0x20 && c < 0x7F)
                snprintf(ch, sizeof ch, "%c", c);
            else
                snprintf(ch, sizeof ch, "\\x%02X", c);
            return lex_fail(lx, i, "illegal character '%s'", ch);
        }
        }
        if (!push(lx, type, i, len)) goto oom;
        i += len;
    }
    if (!push(lx, T_EOF, n, 0)) goto oom;
    return EC_OK;
oom:
    return ec_fail(lx->err, EC_ENOMEM, "out of memory tokenizing SQL");
}

ec_status sql_lex(arena *a, const char *sql, size_t len, sql_tokens *out, ec_error *err) {
    init_classes();
    if (len > SQL_MAX_BYTES)
        return ec_fail(err, EC_ELIMIT, "SQL statement of %zu bytes is over the %d-byte limit", len,
                       SQL_MAX_BYTES);
    if (!utf8_valid(sql, len))
        return ec_fail(err, EC_EPARSE, "invalid_utf8: the SQL statement is not valid UTF-8");
    /* §1.1: trim space/CR/LF at both ends, delete every "\n/" */
    size_t b = 0, e = len;
    while (b < e && (sql[b] == ' ' || sql[b] == '\r' || sql[b] == '\n'))
        b++;
    while (e > b && (sql[e - 1] == ' ' || sql[e - 1] == '\r' || sql[e - 1] == '\n'))
        e--;
    if (b == e) return ec_fail(err, EC_EPARSE, "invalid_string: the SQL statement is empty");
    char *clean = arena_alloc(a, e - b + 1);
    if (!clean) return ec_fail(err, EC_ENOMEM, "out of memory tokenizing SQL");
    size_t k = 0;
    for (size_t i = b; i < e; i++) {
        if (sql[i] == '\n' && i + 1 < e && sql[i + 1] == '/') {
            i++;
            continue;
        }
        clean[k++] = sql[i];
    }
    clean[k] = '\0';
    lexer lx = {.a = a, .s = clean, .n = k, .base = b, .orig = sql, .err = err};
    ec_status st = lex_all(&lx);
    if (st) return st;
    out->sql = clean;
    out->sql_len = k;
    out->base = b;
    out->toks = lx.toks;
    out->n = lx.count;
    return EC_OK;
}

const char *sql_tok_describe(const sql_tokens *t, const sql_token *tok, char *buf, size_t n) {
    if (tok->type == T_EOF) {
        snprintf(buf, n, "end of input");
    } else {
        int len = (int)(tok->len > 40 ? 40 : tok->len);
        snprintf(buf, n, "'%.*s'", len, t->sql + tok->pos);
    }
    return buf;
}

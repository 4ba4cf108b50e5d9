/* sql_parse.c - recursive-descent parser for rule SQL; see sql_parse.h.
 *
 * One precedence ladder (OR < AND < NOT < comparison/IN < + - < * / div mod <
 * unary) parses every expression; check_ctx then rejects AND/OR/NOT/IN where
 * EMQX's grammar has no room for them (SELECT values, operands, arguments),
 * with the position of the offending keyword. */
#include "sql_parse.h"

#include <stdio.h>
#include <string.h>

#include "sql_funcs.h"
#include "sql_lex.h"

typedef struct parser {
    arena *a;
    sql_tokens t;
    size_t i; /* current token */
    unsigned depth;
    ec_error *err;
} parser;

static const sql_token *peek(parser *p) {
    return &p->t.toks[p->i];
}
static const sql_token *peek2(parser *p) {
    return p->i + 1 < p->t.n ? &p->t.toks[p->i + 1] : &p->t.toks[p->t.n - 1];
}
static const sql_token *next(parser *p) {
    const sql_token *tok = &p->t.toks[p->i];
    if (tok->type != T_EOF) p->i++;
    return tok;
}
static bool accept(parser *p, sql_tok type) {
    if (peek(p)->type != type) return false;
    p->i++;
    return true;
}

static ec_status fail_at(parser *p, size_t pos, const char *fmt, const char *a1, const char *a2) {
    char msg[220];
    snprintf(msg, sizeof msg, fmt, a1, a2);
    ec_fail_at(p->err, EC_EPARSE, p->t.sql, pos, "%s", msg);
    if (p->err) {
        char full[EC_ERRMSG_MAX];
        snprintf(full, sizeof full, "syntax error at line %d, column %d: %s", p->err->line,
                 p->err->column, msg);
        memcpy(p->err->msg, full, sizeof full);
    }
    return EC_EPARSE;
}

/* "unexpected X, expected WHAT" at the current token */
static ec_status expected(parser *p, const char *what) {
    char d[64];
    const sql_token *tok = peek(p);
    return fail_at(p, tok->pos, "unexpected %s, expected %s",
                   sql_tok_describe(&p->t, tok, d, sizeof d), what);
}

static ec_status oom(parser *p) {
    return ec_fail(p->err, EC_ENOMEM, "out of memory parsing SQL");
}

static sql_node *node_new(parser *p, node_kind k, uint32_t pos) {
    sql_node *n = arena_calloc(p->a, sizeof *n);
    if (n) {
        n->kind = (uint8_t)k;
        n->pos = pos;
    }
    return n;
}

static uint32_t prev_end(parser *p) {
    const sql_token *t = &p->t.toks[p->i ? p->i - 1 : 0];
    return t->pos + t->len;
}

/* growable arrays of node pointers in the arena */
typedef struct nvec {
    sql_node **v;
    uint32_t n, cap;
} nvec;

static bool nvec_push(parser *p, nvec *nv, sql_node *x) {
    if (!ARENA_GROW(p->a, nv->v, nv->cap, nv->n)) return false;
    nv->v[nv->n++] = x;
    return true;
}

static bool seg_push(parser *p, sql_path *path, uint32_t *cap, sql_seg s) {
    if (!ARENA_GROW(p->a, path->segs, *cap, path->n)) return false;
    path->segs[path->n++] = s;
    return true;
}

static ec_status parse_or(parser *p, sql_node **out);
static ec_status parse_cmp(parser *p, sql_node **out);
static ec_status parse_path_rest(parser *p, const sql_token *first, bool target, sql_path *out);

static bool is_name(const sql_token *t) {
    return t->type == T_NAME || t->type == T_QNAME;
}

/* name_or_path after its first NAME token. In a target ([0]/[-0] allowed)
 * only constant indexes are accepted; in an expression [path] is too. */
static ec_status parse_path_rest(parser *p, const sql_token *first, bool target, sql_path *out) {
    uint32_t cap = 0;
    out->segs = NULL;
    out->n = 0;
    if (!seg_push(p, out, &cap,
                  (sql_seg){.kind = SEG_KEY, .key = first->text, .klen = first->text_len}))
        return oom(p);
    for (;;) {
        const sql_token *t = peek(p);
        if (t->type == T_DOT) {
            next(p);
            const sql_token *s = next(p);
            sql_seg seg = {.kind = SEG_KEY};
            if (s->type == T_NAME || s->type == T_QNAME || s->type == T_STRING) {
                seg.key = s->text;
                seg.klen = s->text_len;
            } else if (s->type == T_INT) {
                seg.key = p->t.sql + s->pos; /* payload.1 is the key "1" */
                seg.klen = s->len;
            } else {
                p->i--;
                return expected(p, "a name after '.'");
            }
            if (!seg_push(p, out, &cap, seg)) return oom(p);
        } else if (t->type == T_LBRACKET) {
            next(p);
            sql_seg seg = {.kind = SEG_INDEX};
            const sql_token *s = peek(p);
            bool neg = false;
            if (s->type == T_MINUS || s->type == T_PLUS) {
                neg = s->type == T_MINUS;
                next(p);
                s = peek(p);
                if (s->type != T_INT) return expected(p, "an integer index");
            }
            if (s->type == T_INT) {
                next(p);
                seg.index = neg ? -s->u.i : s->u.i;
                seg.neg_zero = neg && s->u.i == 0;
            } else if (!target && is_name(s)) {
                next(p);
                sql_node *var = node_new(p, N_PATH, s->pos);
                if (!var) return oom(p);
                ec_status st = parse_path_rest(p, s, false, &var->u.path);
                if (st) return st;
                var->end = prev_end(p);
                seg.kind = SEG_INDEX_VAR;
                seg.var = var;
            } else {
                return expected(p, target ? "an integer index" : "an integer index or a name");
            }
            if (!accept(p, T_RBRACKET)) return expected(p, "']'");
            if (!seg_push(p, out, &cap, seg)) return oom(p);
        } else {
            return EC_OK;
        }
    }
}

static ec_status parse_args(parser *p, sql_node *call) {
    nvec args = {0};
    if (!accept(p, T_RPAREN)) {
        for (;;) {
            sql_node *arg;
            ec_status st = parse_cmp(p, &arg); /* arg: expression with an optional comparison */
            if (st) return st;
            if (!nvec_push(p, &args, arg)) return oom(p);
            if (accept(p, T_COMMA)) continue;
            if (accept(p, T_RPAREN)) break;
            return expected(p, "',' or ')' in the argument list");
        }
    }
    call->u.call.args = args.v;
    call->u.call.nargs = args.n;
    return EC_OK;
}

static ec_status make_call(parser *p, sql_node *call, const char *name, size_t len) {
    call->u.call.name = name;
    call->u.call.nlen = (uint32_t)len;
    call->u.call.fn = sql_func_lookup(name, len); /* unknown: an error when evaluated, as EMQX */
    next(p);                                      /* '(' */
    return parse_args(p, call);
}

static ec_status parse_case(parser *p, sql_node **out) {
    const sql_token *kw = next(p); /* CASE */
    sql_node *n = node_new(p, N_CASE, kw->pos);
    if (!n) return oom(p);
    ec_status st;
    if (peek(p)->type != T_WHEN) {
        if ((st = parse_cmp(p, &n->u.kase.subject))) return st;
    }
    nvec whens = {0}, thens = {0};
    if (peek(p)->type != T_WHEN) return expected(p, "WHEN");
    while (accept(p, T_WHEN)) {
        sql_node *w, *t;
        if ((st = n->u.kase.subject ? parse_cmp(p, &w) : parse_or(p, &w))) return st;
        if (!accept(p, T_THEN)) return expected(p, "THEN");
        if ((st = parse_cmp(p, &t))) return st;
        if (!nvec_push(p, &whens, w) || !nvec_push(p, &thens, t)) return oom(p);
    }
    if (accept(p, T_ELSE)) {
        if ((st = parse_cmp(p, &n->u.kase.els))) return st;
    }
    if (!accept(p, T_END)) return expected(p, "WHEN, ELSE or END");
    n->u.kase.whens = whens.v;
    n->u.kase.thens = thens.v;
    n->u.kase.n = whens.n;
    n->end = prev_end(p);
    *out = n;
    return EC_OK;
}

static bool module_prefix_ok(const sql_seg *s) {
    return (s->klen >= 15 && memcmp(s->key, "emqx_rule_funcs", 15) == 0) ||
           (s->klen >= 13 && memcmp(s->key, "EmqxRuleFuncs", 13) == 0);
}

static ec_status parse_primary(parser *p, sql_node **out) {
    const sql_token *t = peek(p);
    sql_node *n;
    ec_status st;
    switch (t->type) {
    case T_INT:
    case T_FLOAT:
    case T_STRING:
        next(p);
        if (!(n = node_new(p, N_CONST, t->pos))) return oom(p);
        n->u.constant = t->type == T_INT     ? v_int(t->u.i)
                        : t->type == T_FLOAT ? v_float(t->u.f)
                                             : v_bin(t->text, t->text_len);
        break;
    case T_RANGE:
        next(p);
        if (!(n = node_new(p, N_RANGE, t->pos))) return oom(p);
        n->u.range.lo = t->u.range.lo;
        n->u.range.hi = t->u.range.hi;
        break;
    case T_LBRACKET: {
        next(p);
        if (!(n = node_new(p, N_LIST, t->pos))) return oom(p);
        nvec items = {0};
        if (!accept(p, T_RBRACKET)) {
            for (;;) {
                sql_node *item;
                if ((st = parse_cmp(p, &item))) return st;
                if (!nvec_push(p, &items, item)) return oom(p);
                if (accept(p, T_COMMA)) continue;
                if (accept(p, T_RBRACKET)) break;
                return expected(p, "',' or ']' in the list");
            }
        }
        n->u.list.items = items.v;
        n->u.list.n = items.n;
        break;
    }
    case T_LPAREN:
        next(p);
        if ((st = parse_or(p, &n))) return st;
        if (!accept(p, T_RPAREN)) return expected(p, "')'");
        *out = n; /* parentheses are transparent; keep the inner node's span */
        return EC_OK;
    case T_CASE: return parse_case(p, out);
    case T_DIV:
    case T_MOD:
        if (peek2(p)->type != T_LPAREN) return expected(p, "an expression");
        next(p);
        if (!(n = node_new(p, N_CALL, t->pos))) return oom(p);
        if ((st = make_call(p, n, t->type == T_DIV ? "div" : "mod", 3))) return st;
        break;
    case T_NAME:
    case T_QNAME: {
        next(p);
        if (t->type == T_NAME && peek(p)->type != T_DOT && peek(p)->type != T_LBRACKET &&
            peek(p)->type != T_LPAREN &&
            ((t->text_len == 4 && memcmp(t->text, "true", 4) == 0) ||
             (t->text_len == 5 && memcmp(t->text, "false", 5) == 0))) {
            if (!(n = node_new(p, N_CONST, t->pos))) return oom(p);
            n->u.constant = v_bool(t->text_len == 4);
            break;
        }
        if (!(n = node_new(p, N_PATH, t->pos))) return oom(p);
        if ((st = parse_path_rest(p, t, false, &n->u.path))) return st;
        if (peek(p)->type == T_LPAREN) {
            sql_path path = n->u.path;
            const char *fname;
            size_t flen;
            if (path.n == 1 && path.segs[0].kind == SEG_KEY) {
                fname = path.segs[0].key;
                flen = path.segs[0].klen;
            } else if (path.n == 2 && path.segs[0].kind == SEG_KEY &&
                       path.segs[1].kind == SEG_KEY && module_prefix_ok(&path.segs[0])) {
                fname = path.segs[1].key;
                flen = path.segs[1].klen;
            } else {
                return fail_at(
                    p, t->pos, "%s%s",
                    "invalid function name (only emqx_rule_funcs.NAME may name a module)", "");
            }
            memset(&n->u, 0, sizeof n->u);
            n->kind = N_CALL;
            if ((st = make_call(p, n, fname, flen))) return st;
        } else if (peek(p)->type == T_RANGE) {
            const sql_token *r = next(p);
            sql_node *s = node_new(p, N_SLICE, t->pos);
            if (!s) return oom(p);
            n->end = r->pos;
            s->u.slice.of = n;
            s->u.slice.lo = r->u.range.lo;
            s->u.slice.hi = r->u.range.hi;
            n = s;
        }
        break;
    }
    default: return expected(p, "an expression");
    }
    n->end = prev_end(p);
    *out = n;
    return EC_OK;
}

static ec_status enter(parser *p) {
    if (++p->depth > SQL_MAX_DEPTH)
        return fail_at(p, peek(p)->pos, "expression nested deeper than %s levels%s", "64", "");
    return EC_OK;
}

static ec_status parse_unary(parser *p, sql_node **out) {
    const sql_token *t = peek(p);
    ec_status st;
    if (t->type == T_MINUS || t->type == T_PLUS) {
        next(p);
        if ((st = enter(p))) return st;
        sql_node *operand;
        st = parse_unary(p, &operand);
        p->depth--;
        if (st) return st;
        if (t->type == T_PLUS) {
            *out = operand;
            return EC_OK;
        }
        sql_node *n = node_new(p, N_NEG, t->pos);
        if (!n) return oom(p);
        n->u.operand = operand;
        n->end = prev_end(p);
        *out = n;
        return EC_OK;
    }
    if ((st = enter(p))) return st;
    st = parse_primary(p, out);
    p->depth--;
    return st;
}

static ec_status parse_binary(parser *p, sql_node **out, int level);

/* level 0: + -   level 1: * / div mod */
static bool level_op(sql_tok t, int level) {
    return level == 0 ? (t == T_PLUS || t == T_MINUS)
                      : (t == T_STAR || t == T_SLASH || t == T_DIV || t == T_MOD);
}

static ec_status parse_binary(parser *p, sql_node **out, int level) {
    sql_node *l;
    ec_status st = level == 1 ? parse_unary(p, &l) : parse_binary(p, &l, level + 1);
    if (st) return st;
    while (level_op(peek(p)->type, level)) {
        const sql_token *op = next(p);
        sql_node *r;
        st = level == 1 ? parse_unary(p, &r) : parse_binary(p, &r, level + 1);
        if (st) return st;
        sql_node *n = node_new(p, N_ARITH, l->pos);
        if (!n) return oom(p);
        n->op = (uint8_t)op->type;
        n->u.bin.l = l;
        n->u.bin.r = r;
        n->end = prev_end(p);
        l = n;
    }
    *out = l;
    return EC_OK;
}

static bool is_cmp(sql_tok t) {
    return t == T_EQ || t == T_NE || t == T_LT || t == T_GT || t == T_LE || t == T_GE ||
           t == T_MATCH || t == T_TILDE_EQ;
}

/* expr [cmp expr | [NOT] IN (items)] */
static ec_status parse_cmp(parser *p, sql_node **out) {
    sql_node *l;
    ec_status st = parse_binary(p, &l, 0);
    if (st) return st;
    const sql_token *t = peek(p);
    if (is_cmp(t->type)) {
        next(p);
        sql_node *r;
        if ((st = parse_binary(p, &r, 0))) return st;
        if (is_cmp(peek(p)->type))
            return fail_at(p, peek(p)->pos, "comparisons do not chain%s%s (use AND)", "", "");
        sql_node *n = node_new(p, N_CMP, l->pos);
        if (!n) return oom(p);
        n->op = (uint8_t)t->type;
        n->u.bin.l = l;
        n->u.bin.r = r;
        n->end = prev_end(p);
        *out = n;
        return EC_OK;
    }
    bool negated = false;
    if (t->type == T_NOT && peek2(p)->type == T_IN) {
        next(p);
        negated = true;
    }
    if (peek(p)->type == T_IN) {
        const sql_token *in_tok = next(p);
        if (!accept(p, T_LPAREN)) return expected(p, "'(' after IN");
        nvec items = {0};
        for (;;) {
            sql_node *item;
            if ((st = parse_cmp(p, &item))) return st;
            if (!nvec_push(p, &items, item)) return oom(p);
            if (accept(p, T_COMMA)) continue;
            if (accept(p, T_RPAREN)) break;
            return expected(p, "',' or ')' in the IN list");
        }
        sql_node *n = node_new(p, N_IN, negated ? t->pos : in_tok->pos);
        if (!n) return oom(p);
        n->negated = negated;
        n->u.in.subject = l;
        n->u.in.items = items.v;
        n->u.in.n = items.n;
        n->pos = l->pos;
        n->end = prev_end(p);
        *out = n;
        return EC_OK;
    }
    *out = l;
    return EC_OK;
}

static ec_status parse_not(parser *p, sql_node **out) {
    const sql_token *t = peek(p);
    if (t->type == T_NOT) {
        next(p);
        ec_status st = enter(p);
        if (st) return st;
        sql_node *operand;
        st = parse_not(p, &operand);
        p->depth--;
        if (st) return st;
        sql_node *n = node_new(p, N_NOT, t->pos);
        if (!n) return oom(p);
        n->u.operand = operand;
        n->end = prev_end(p);
        *out = n;
        return EC_OK;
    }
    return parse_cmp(p, out);
}

static ec_status parse_logic(parser *p, sql_node **out, sql_tok op) {
    sql_node *l;
    ec_status st = op == T_OR ? parse_logic(p, &l, T_AND) : parse_not(p, &l);
    if (st) return st;
    while (peek(p)->type == op) {
        next(p);
        sql_node *r;
        st = op == T_OR ? parse_logic(p, &r, T_AND) : parse_not(p, &r);
        if (st) return st;
        sql_node *n = node_new(p, op == T_OR ? N_OR : N_AND, l->pos);
        if (!n) return oom(p);
        n->u.bin.l = l;
        n->u.bin.r = r;
        n->end = prev_end(p);
        l = n;
    }
    *out = l;
    return EC_OK;
}

static ec_status parse_or(parser *p, sql_node **out) {
    return parse_logic(p, out, T_OR);
}

/* Rejects AND/OR/NOT/IN outside condition positions (EMQX grammar). */
static ec_status check_ctx(parser *p, const sql_node *n, bool cond) {
    if (!n) return EC_OK;
    ec_status st;
    switch ((node_kind)n->kind) {
    case N_AND:
    case N_OR:
    case N_NOT:
    case N_IN:
        if (!cond) {
            const char *what = n->kind == N_AND  ? "AND"
                               : n->kind == N_OR ? "OR"
                               : n->kind == N_IN ? "IN"
                                                 : "NOT";
            return fail_at(p, n->pos,
                           "%s is only allowed in WHERE, INCASE and CASE WHEN conditions%s; "
                           "write CASE WHEN ... THEN true ELSE false END",
                           what, "");
        }
        if (n->kind == N_NOT) return check_ctx(p, n->u.operand, true);
        if (n->kind == N_IN) {
            if ((st = check_ctx(p, n->u.in.subject, false))) return st;
            for (uint32_t i = 0; i < n->u.in.n; i++)
                if ((st = check_ctx(p, n->u.in.items[i], false))) return st;
            return EC_OK;
        }
        if ((st = check_ctx(p, n->u.bin.l, true))) return st;
        return check_ctx(p, n->u.bin.r, true);
    case N_ARITH:
    case N_CMP:
        if ((st = check_ctx(p, n->u.bin.l, false))) return st;
        return check_ctx(p, n->u.bin.r, false);
    case N_NEG: return check_ctx(p, n->u.operand, false);
    case N_LIST:
        for (uint32_t i = 0; i < n->u.list.n; i++)
            if ((st = check_ctx(p, n->u.list.items[i], false))) return st;
        return EC_OK;
    case N_CALL:
        for (uint32_t i = 0; i < n->u.call.nargs; i++)
            if ((st = check_ctx(p, n->u.call.args[i], false))) return st;
        return EC_OK;
    case N_CASE:
        if ((st = check_ctx(p, n->u.kase.subject, false))) return st;
        for (uint32_t i = 0; i < n->u.kase.n; i++) {
            if ((st = check_ctx(p, n->u.kase.whens[i], !n->u.kase.subject))) return st;
            if ((st = check_ctx(p, n->u.kase.thens[i], false))) return st;
        }
        return check_ctx(p, n->u.kase.els, false);
    default: return EC_OK;
    }
}

/* alias target: name_or_path with constant indexes ([0] prepends, [-0] appends) */
static ec_status parse_target(parser *p, sql_path *out) {
    const sql_token *t = peek(p);
    if (!is_name(t)) return expected(p, "an alias name");
    next(p);
    return parse_path_rest(p, t, true, out);
}

static ec_status derive_target(parser *p, sql_field *f, uint32_t index) {
    const sql_node *e = f->expr;
    if (e->kind == N_PATH) {
        f->target = e->u.path;
        return EC_OK;
    }
    if (e->kind == N_SLICE) {
        f->target = e->u.slice.of->u.path;
        return EC_OK;
    }
    sql_seg *seg = arena_calloc(p->a, sizeof *seg);
    if (!seg) return oom(p);
    seg->kind = SEG_KEY;
    if (e->kind == N_CONST && e->u.constant.type == VT_BIN) { /* 'abc' -> key abc */
        seg->key = e->u.constant.u.s;
        seg->klen = e->u.constant.len;
    } else { /* EMQX generates an unpredictable key; ours is stable */
        char *k = arena_alloc(p->a, 32);
        if (!k) return oom(p);
        int len = snprintf(k, 32, "_v_%s_%u",
                           e->kind == N_CALL    ? "fun"
                           : e->kind == N_CONST ? "const"
                                                : "expr",
                           index + 1);
        seg->key = k;
        seg->klen = (uint32_t)len;
    }
    f->target.segs = seg;
    f->target.n = 1;
    return EC_OK;
}

static ec_status parse_fields(parser *p, sql_field **out, uint32_t *count, bool allow_star) {
    uint32_t n = 0, cap = 0;
    sql_field *fields = NULL;
    ec_status st;
    for (;;) {
        if (!ARENA_GROW(p->a, fields, cap, n)) return oom(p);
        sql_field *f = &fields[n];
        memset(f, 0, sizeof *f);
        if (peek(p)->type == T_STAR && allow_star) {
            next(p);
            f->star = true;
        } else {
            if ((st = parse_cmp(p, &f->expr))) return st;
            if ((st = check_ctx(p, f->expr, false))) return st;
            sql_tok nt = peek(p)->type;
            if (nt == T_AND || nt == T_OR || nt == T_IN || (nt == T_NOT && peek2(p)->type == T_IN))
                return fail_at(p, peek(p)->pos,
                               "%s is only allowed in WHERE, INCASE and CASE WHEN conditions%s; "
                               "write CASE WHEN ... THEN true ELSE false END",
                               nt == T_AND  ? "AND"
                               : nt == T_OR ? "OR"
                                            : "IN",
                               "");
            if (accept(p, T_AS) || is_name(peek(p))) {
                if ((st = parse_target(p, &f->target))) return st;
                f->has_alias = true;
            } else if ((st = derive_target(p, f, n))) {
                return st;
            }
        }
        n++;
        if (!accept(p, T_COMMA)) break;
    }
    *out = fields;
    *count = n;
    return EC_OK;
}

static ec_status parse_condition(parser *p, sql_node **out) {
    ec_status st = parse_or(p, out);
    if (st) return st;
    if ((st = check_ctx(p, *out, true))) return st;
    if (accept(p, T_AS)) { /* the grammar lets a condition carry an (ignored) alias */
        sql_path ignored;
        if ((st = parse_target(p, &ignored))) return st;
    }
    return EC_OK;
}

static ec_status parse_from(parser *p, sql_stmt *s) {
    if (!accept(p, T_FROM))
        return expected(p, s->foreach ? "DO, INCASE, FROM or ','" : "FROM or ','");
    uint32_t cap = 0;
    for (;;) {
        const sql_token *t = peek(p);
        if (t->type != T_QNAME && t->type != T_STRING && t->type != T_NAME)
            return expected(p, "a topic after FROM");
        next(p);
        if (!ARENA_GROW(p->a, s->from, cap, s->nfrom)) return oom(p);
        sql_from *f = &s->from[s->nfrom++];
        f->topic = t->text;
        f->len = t->text_len;
        f->is_event = t->text_len >= 8 && memcmp(t->text, "$events/", 8) == 0;
        if (f->len == 0) return fail_at(p, t->pos, "empty topic in FROM%s%s", "", "");
        if (!accept(p, T_COMMA)) return EC_OK;
    }
}

ec_status sql_parse(arena *a, const char *sql, size_t len, sql_stmt *out, ec_error *err) {
    parser p = {.a = a, .err = err};
    ec_status st = sql_lex(a, sql, len, &p.t, err);
    if (st) return st;
    memset(out, 0, sizeof *out);
    out->text = p.t.sql;
    if (accept(&p, T_SELECT)) {
        if ((st = parse_fields(&p, &out->fields, &out->nfields, true))) return st;
    } else if (accept(&p, T_FOREACH)) {
        out->foreach = true;
        if ((st = parse_fields(&p, &out->fields, &out->nfields, false))) return st;
        if (accept(&p, T_DO)) {
            out->has_do = true;
            if ((st = parse_fields(&p, &out->do_fields, &out->ndo, true))) return st;
        }
        if (accept(&p, T_INCASE)) {
            if ((st = parse_condition(&p, &out->incase))) return st;
        }
    } else {
        return expected(&p, "SELECT or FOREACH");
    }
    if ((st = parse_from(&p, out))) return st;
    if (accept(&p, T_WHERE)) {
        if ((st = parse_condition(&p, &out->where))) return st;
    }
    if (peek(&p)->type != T_EOF)
        return expected(&p, out->where ? "end of statement" : "WHERE or end of statement");
    return EC_OK;
}

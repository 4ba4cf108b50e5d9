/* sql_eval.c - rule statement evaluation; see sql_eval.h.
 *
 * Name resolution uses "layers": maps consulted in order, the first holding
 * the top-level key wins (a shallow merge without building the merged map):
 *   SELECT fields : output-so-far first (whole path); if undefined -> columns
 *   WHERE         : [selected, columns]
 *   FOREACH item  : [{item}, selected, columns]; DO fields build a fresh map
 * Maps reachable from the columns or the payload cache are shared and never
 * modified: writes copy the maps along the written path. */
#include "sql_eval.h"

#include <math.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/json.h"
#include "sql_funcs.h"
#include "sql_lex.h"

#define MAX_LAYERS 3

typedef struct ev_state {
    sql_eval pub;
    const value *layers[MAX_LAYERS];
    int nlayers;
    bool columns_layer[MAX_LAYERS]; /* layer i is the message's column map */
} ev_state;

arena *sql_eval_arena(sql_eval *ev) {
    return ev->a;
}

ec_status sql_fn_fail(sql_eval *ev, const char *fmt, ...) {
    if (ev->err) {
        va_list ap;
        va_start(ap, fmt);
        ev->err->code = EC_EINVAL;
        ev->err->line = ev->err->column = 0;
        ev->err->pos = 0;
        vsnprintf(ev->err->msg, sizeof ev->err->msg, fmt, ap);
        va_end(ap);
    }
    return EC_EINVAL;
}

static ec_status oom(sql_eval *ev) {
    return ec_fail(ev->err, EC_ENOMEM, "out of memory evaluating rule");
}

/* a path segment that is the key lit */
static bool seg_is(const sql_seg *seg, const char *lit) {
    size_t n = strlen(lit);
    return seg->kind == SEG_KEY && seg->klen == n && memcmp(seg->key, lit, n) == 0;
}

const value *sql_eval_column(sql_eval *ev, const char *name, size_t len) {
    const value *v = v_map_get(ev->msg->columns, name, len);
    if (!v && len == 8 && memcmp(name, "metadata", 8) == 0) return &ev->metadata;
    return v;
}

ec_status sql_eval_payload_json(sql_eval *ev, const value **out) {
    sql_msg *m = ev->msg;
    if (m->payload_state == 0) {
        const value *p = v_map_get(m->columns, "payload", 7);
        if (!p || p->type != VT_BIN) {
            m->payload_state = 1;
            m->payload_json = p ? *p : v_undef();
        } else {
            ec_error e;
            /* decoded into the message arena: shared by every rule of this message */
            if (json_decode(ev->a, p->u.s, p->len, NULL, &m->payload_json, &e) == EC_OK) {
                m->payload_state = 1;
            } else {
                m->payload_state = 2;
                snprintf(m->payload_err, sizeof m->payload_err, "%s", e.msg);
            }
        }
    }
    if (m->payload_state == 2)
        return sql_fn_fail(ev, "decode_json_failed: the payload is not JSON (%s)", m->payload_err);
    *out = &m->payload_json;
    return EC_OK;
}

/* ---- numbers and comparison ------------------------------------------- */

bool sql_str_to_number(const char *s, size_t n, value *out) {
    char buf[64];
    if (n == 0 || n >= sizeof buf) return false;
    memcpy(buf, s, n);
    buf[n] = '\0';
    /* integer syntax: [+-]digits */
    size_t i = (buf[0] == '+' || buf[0] == '-') ? 1 : 0;
    bool digits = i < n;
    for (size_t k = i; k < n; k++)
        if (buf[k] < '0' || buf[k] > '9') digits = false;
    if (digits) {
        char *end;
        errno = 0;
        long long v = strtoll(buf, &end, 10);
        if (errno == 0 && *end == '\0') {
            *out = v_int(v);
            return true;
        }
        *out = v_float(strtod(buf, NULL)); /* beyond int64 */
        return true;
    }
    /* float syntax (Erlang binary_to_float): [+-]D+.D+([eE][+-]?D+)? */
    const char *p = buf + i;
    if (!(*p >= '0' && *p <= '9')) return false;
    while (*p >= '0' && *p <= '9')
        p++;
    if (*p != '.') return false;
    p++;
    if (!(*p >= '0' && *p <= '9')) return false;
    while (*p >= '0' && *p <= '9')
        p++;
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '+' || *p == '-') p++;
        if (!(*p >= '0' && *p <= '9')) return false;
        while (*p >= '0' && *p <= '9')
            p++;
    }
    if (*p) return false;
    double f = strtod(buf, NULL);
    if (!isfinite(f)) return false;
    *out = v_float(f);
    return true;
}

static bool is_atom(const value *v) {
    return v->type == VT_BOOL || v->type == VT_NULL || (v->type == VT_BIN && (v->flags & VF_ATOM));
}

/* Erlang term order rank: number < atom < map < list < binary */
static int rank(const value *v) {
    switch ((vtype)v->type) {
    case VT_INT:
    case VT_FLOAT: return 0;
    case VT_BOOL:
    case VT_NULL:
    case VT_UNDEF: return 1;
    case VT_BIN: return (v->flags & VF_ATOM) ? 1 : 4;
    case VT_MAP: return 2;
    case VT_ARRAY: return 3;
    }
    return 5;
}

static void atom_text(const value *v, const char **s, size_t *n) {
    switch (v->type) {
    case VT_BOOL:
        *s = v->u.b ? "true" : "false";
        *n = v->u.b ? 4 : 5;
        return;
    case VT_NULL: *s = "null", *n = 4; return;
    case VT_UNDEF: *s = "undefined", *n = 9; return;
    default: *s = v->u.s, *n = v->len;
    }
}

static int bytes_cmp(const char *a, size_t an, const char *b, size_t bn) {
    int c = memcmp(a, b, an < bn ? an : bn);
    if (c) return c;
    return an < bn ? -1 : an > bn;
}

static int num_cmp(const value *x, const value *y) {
    if (x->type == VT_INT && y->type == VT_INT) return x->u.i < y->u.i ? -1 : x->u.i > y->u.i;
    double a = x->type == VT_INT ? (double)x->u.i : x->u.f;
    double b = y->type == VT_INT ? (double)y->u.i : y->u.f;
    return a < b ? -1 : a > b;
}

static int key_sort_cmp(const void *a, const void *b) {
    const vpair *x = *(const vpair *const *)a, *y = *(const vpair *const *)b;
    return sql_value_compare(&x->key, &y->key);
}

int sql_value_compare(const value *x, const value *y) {
    int rx = rank(x), ry = rank(y);
    if (rx != ry) return rx < ry ? -1 : 1;
    switch (rx) {
    case 0: return num_cmp(x, y);
    case 1: {
        const char *a, *b;
        size_t an, bn;
        atom_text(x, &a, &an);
        atom_text(y, &b, &bn);
        return bytes_cmp(a, an, b, bn);
    }
    case 4: return bytes_cmp(x->u.s, x->len, y->u.s, y->len);
    case 3:
        for (uint32_t i = 0; i < x->len && i < y->len; i++) {
            int c = sql_value_compare(&x->u.items[i], &y->u.items[i]);
            if (c) return c;
        }
        return x->len < y->len ? -1 : x->len > y->len;
    case 2: {
        if (x->len != y->len) return x->len < y->len ? -1 : 1;
        /* same size: keys in order, then values in key order */
        const vpair *sx[64], *sy[64];
        const vpair **ix = sx, **iy = sy;
        if (x->len > 64) {
            ix = malloc(sizeof *ix * x->len);
            iy = malloc(sizeof *iy * x->len);
            if (!ix || !iy) {
                free(ix);
                free(iy);
                return 0;
            }
        }
        for (uint32_t i = 0; i < x->len; i++)
            ix[i] = &x->u.pairs[i], iy[i] = &y->u.pairs[i];
        qsort(ix, x->len, sizeof *ix, key_sort_cmp);
        qsort(iy, x->len, sizeof *iy, key_sort_cmp);
        int c = 0;
        for (uint32_t i = 0; i < x->len && !c; i++)
            c = sql_value_compare(&ix[i]->key, &iy[i]->key);
        for (uint32_t i = 0; i < x->len && !c; i++)
            c = sql_value_compare(&ix[i]->val, &iy[i]->val);
        if (ix != sx) {
            free(ix);
            free(iy);
        }
        return c;
    }
    }
    return 0;
}

bool sql_topic_match(const char *t, size_t tn, const char *f, size_t fn) {
    size_t ti = 0, fi = 0;
    if (tn > 0 && t[0] == '$' && fn > 0 && (f[0] == '+' || f[0] == '#')) return false;
    for (;;) {
        /* current filter level */
        size_t fe = fi;
        while (fe < fn && f[fe] != '/')
            fe++;
        size_t te = ti;
        while (te < tn && t[te] != '/')
            te++;
        if (fe - fi == 1 && f[fi] == '#') return fe == fn; /* '#' must be last; matches the rest */
        if (ti > tn) return false;                         /* topic exhausted, filter not */
        if (!(fe - fi == 1 && f[fi] == '+') &&
            !(fe - fi == te - ti && memcmp(f + fi, t + ti, fe - fi) == 0))
            return false;
        bool f_end = fe >= fn, t_end = te >= tn;
        if (f_end && t_end) return true;
        if (f_end) return false;
        if (t_end) {
            /* topic done: only a trailing "/#" still matches ("t/#" matches "t") */
            return fn - fe == 2 && f[fe + 1] == '#';
        }
        fi = fe + 1;
        ti = te + 1;
    }
}

/* ---- paths ------------------------------------------------------------- */

/* A string met during a walk is decoded on the spot; not JSON -> undefined. */
static value decode_inline(sql_eval *ev, const value *v) {
    value out;
    if (json_decode(ev->a, v->u.s, v->len, NULL, &out, NULL) != EC_OK) return v_undef();
    return out;
}

static value nth1(const value *arr, int64_t i) {
    if (arr->type != VT_ARRAY || i == 0) return v_undef();
    int64_t n = arr->len;
    int64_t k = i > 0 ? i : n + 1 + i;
    if (k < 1 || k > n) return v_undef();
    return arr->u.items[k - 1];
}

static ec_status resolve(ev_state *s, const sql_path *path, value *out);

/* Applies segs to cur. root: the value of the path's first segment, against
 * which variable indexes are resolved. */
static ec_status walk(ev_state *s, value cur, const value *root, const sql_seg *segs, uint32_t n,
                      value *out) {
    for (uint32_t i = 0; i < n; i++) {
        const sql_seg *seg = &segs[i];
        if (cur.type == VT_BIN) cur = decode_inline(&s->pub, &cur);
        if (seg->kind == SEG_KEY) {
            const value *v = cur.type == VT_MAP ? v_map_get(&cur, seg->key, seg->klen) : NULL;
            cur = v ? *v : v_undef();
        } else {
            int64_t idx;
            if (seg->kind == SEG_INDEX) {
                idx = seg->index;
            } else {
                value iv;
                const sql_path *vp = &seg->var->u.path;
                const value *r0 = root && root->type == VT_MAP
                                      ? v_map_get(root, vp->segs[0].key, vp->segs[0].klen)
                                      : NULL;
                ec_status st = walk(s, r0 ? *r0 : v_undef(), root, vp->segs + 1, vp->n - 1, &iv);
                if (st) return st;
                if (iv.type != VT_INT) {
                    *out = v_undef();
                    return EC_OK;
                }
                idx = iv.u.i;
            }
            cur = nth1(&cur, idx);
        }
        if (cur.type == VT_UNDEF) break;
    }
    *out = cur;
    return EC_OK;
}

/* Path against one map. is_columns: the message columns (payload decoded
 * with an error when it is not JSON; metadata virtual). */
static ec_status path_in(ev_state *s, const value *map, bool is_columns, const sql_path *path,
                         value *out) {
    const sql_seg *s0 = &path->segs[0];
    const value *root = map->type == VT_MAP ? v_map_get(map, s0->key, s0->klen) : NULL;
    if (!root && is_columns && seg_is(s0, "metadata")) root = &s->pub.metadata;
    if (!root) {
        *out = v_undef();
        return EC_OK;
    }
    if (path->n == 1) {
        *out = *root;
        return EC_OK;
    }
    value base = *root;
    if (is_columns && root->type == VT_BIN && seg_is(s0, "payload")) {
        const value *pj;
        ec_status st = sql_eval_payload_json(&s->pub, &pj);
        if (st) return st;
        base = *pj;
    }
    return walk(s, base, &base, path->segs + 1, path->n - 1, out);
}

static const value *layer_root(ev_state *s, const char *key, size_t klen, int *which) {
    for (int i = 0; i < s->nlayers; i++) {
        const value *m = s->layers[i];
        if (m->type == VT_MAP && v_map_get(m, key, klen)) {
            *which = i;
            return m;
        }
        if (s->columns_layer[i] && klen == 8 && memcmp(key, "metadata", 8) == 0) {
            *which = i;
            return m;
        }
    }
    return NULL;
}

static ec_status resolve(ev_state *s, const sql_path *path, value *out) {
    ec_status st;
    if (s->pub.selected) { /* SELECT/DO: output so far, then the rest */
        if ((st = path_in(s, s->pub.selected, false, path, out))) return st;
        if (out->type != VT_UNDEF) return EC_OK;
    }
    int which;
    const value *m = layer_root(s, path->segs[0].key, path->segs[0].klen, &which);
    if (!m) {
        *out = v_undef();
        return EC_OK;
    }
    return path_in(s, m, s->columns_layer[which], path, out);
}

/* ---- writing into the output map (copy-on-write) ------------------------ */

static bool map_copy_set(arena *a, const value *base, const char *key, size_t klen, value v,
                         value *out) {
    bool ok;
    uint32_t n = base && base->type == VT_MAP ? base->len : 0;
    value m = v_map_new(a, n + 1, &ok);
    if (!ok) return false;
    if (n) {
        memcpy(m.u.pairs, base->u.pairs, n * sizeof(vpair));
        m.len = n;
    }
    return v_map_put(a, &m, key, klen, v) && (*out = m, true);
}

static ec_status put_in(sql_eval *ev, const value *cur, const sql_seg *segs, uint32_t n, value v,
                        bool top_payload, value *out) {
    if (n == 0) {
        *out = v;
        return EC_OK;
    }
    const sql_seg *seg = &segs[0];
    if (seg->kind == SEG_KEY) {
        value base = cur ? *cur : v_undef();
        if (top_payload && base.type == VT_BIN) base = decode_inline(ev, &base);
        if (base.type != VT_MAP) base = v_undef(); /* strings/numbers are replaced */
        const value *child = base.type == VT_MAP ? v_map_get(&base, seg->key, seg->klen) : NULL;
        value nv;
        ec_status st = put_in(ev, child, segs + 1, n - 1, v, false, &nv);
        if (st) return st;
        if (!map_copy_set(ev->a, &base, seg->key, seg->klen, nv, out)) return oom(ev);
        return EC_OK;
    }
    /* index target: [n] replace, [-n] from the end, [0] prepend, [-0] append */
    bool is_list = cur && cur->type == VT_ARRAY;
    uint32_t len = is_list ? cur->len : 0;
    bool ok;
    if (!is_list || seg->index == 0) {
        value elem;
        ec_status st = put_in(ev, NULL, segs + 1, n - 1, v, false, &elem);
        if (st) return st;
        value arr = v_array_new(ev->a, len + 1, &ok);
        if (!ok) return oom(ev);
        bool append = is_list && seg->neg_zero;
        if (!append) v_array_push(ev->a, &arr, elem);
        for (uint32_t i = 0; i < len; i++)
            v_array_push(ev->a, &arr, cur->u.items[i]);
        if (append) v_array_push(ev->a, &arr, elem);
        *out = arr;
        return EC_OK;
    }
    int64_t k = seg->index > 0 ? seg->index : (int64_t)len + 1 + seg->index;
    if (k < 1 || k > (int64_t)len) { /* out of range: unchanged */
        *out = *cur;
        return EC_OK;
    }
    value elem;
    ec_status st = put_in(ev, &cur->u.items[k - 1], segs + 1, n - 1, v, false, &elem);
    if (st) return st;
    value arr = v_array_new(ev->a, len, &ok);
    if (!ok) return oom(ev);
    memcpy(arr.u.items, cur->u.items, len * sizeof(value));
    arr.len = len;
    arr.u.items[k - 1] = elem;
    *out = arr;
    return EC_OK;
}

/* Writes v at target in the owned top-level map *sel (modified in place). */
static ec_status write_target(sql_eval *ev, value *sel, const sql_path *target, value v) {
    const sql_seg *s0 = &target->segs[0];
    if (s0->kind != SEG_KEY) return sql_fn_fail(ev, "invalid alias target");
    value nv = v;
    /* the written value sits under target->n levels (this also bounds put_in's recursion) */
    if (target->n > VALUE_MAX_DEPTH || !v_depth_within(&v, VALUE_MAX_DEPTH - target->n))
        return sql_fn_fail(ev, "alias %.*s: value nested deeper than %d levels",
                           (int)(s0->klen > 40 ? 40 : s0->klen), s0->key, VALUE_MAX_DEPTH);
    if (target->n > 1) {
        const value *child = v_map_get(sel, s0->key, s0->klen);
        bool top_payload = seg_is(s0, "payload");
        ec_status st = put_in(ev, child, target->segs + 1, target->n - 1, v, top_payload, &nv);
        if (st) return st;
    }
    if (!v_map_put(ev->a, sel, s0->key, s0->klen, nv)) return oom(ev);
    return EC_OK;
}

static ec_status merge_into(sql_eval *ev, value *sel, const value *m) {
    if (!m || m->type != VT_MAP) return EC_OK;
    for (uint32_t i = 0; i < m->len; i++) {
        const vpair *p = &m->u.pairs[i];
        vpair *existing = NULL;
        for (uint32_t j = 0; j < sel->len; j++)
            if (sel->u.pairs[j].key.len == p->key.len &&
                memcmp(sel->u.pairs[j].key.u.s, p->key.u.s, p->key.len) == 0) {
                existing = &sel->u.pairs[j];
                break;
            }
        if (existing)
            existing->val = p->val;
        else if (!v_map_append(ev->a, sel, p->key, p->val))
            return oom(ev);
    }
    return EC_OK;
}

/* The message columns plus metadata, as one map (for * and FOREACH outputs). */
static ec_status merge_columns(ev_state *s, value *sel) {
    ec_status st = merge_into(&s->pub, sel, s->pub.msg->columns);
    if (st) return st;
    if (!v_map_get(s->pub.msg->columns, "metadata", 8)) {
        if (!v_map_put(s->pub.a, sel, "metadata", 8, s->pub.metadata)) return oom(&s->pub);
        sel->u.pairs[sel->len - 1].key.flags = VF_ATOM;
    }
    return EC_OK;
}

/* ---- expressions ------------------------------------------------------- */

static ec_status eval(ev_state *s, const sql_node *n, value *out);
static ec_status cond(ev_state *s, const sql_node *n, bool *out);

static const char *kind_of(const value *v) {
    return vtype_name((vtype)v->type);
}

/* str()-style text of a value for '+' concatenation (shared with str()) */
ec_status sql_value_to_str(sql_eval *ev, const value *v, value *out);

static ec_status arith(ev_state *s, int op, const value *x, const value *y, value *out) {
    sql_eval *ev = &s->pub;
    if (op == T_PLUS && (x->type == VT_BIN || y->type == VT_BIN) && x->type != VT_UNDEF &&
        y->type != VT_UNDEF && x->type != VT_NULL && y->type != VT_NULL) {
        value a, b;
        ec_status st;
        if ((st = sql_value_to_str(ev, x, &a)) || (st = sql_value_to_str(ev, y, &b))) return st;
        char *p = arena_alloc(ev->a, (size_t)a.len + b.len + 1);
        if (!p) return oom(ev);
        memcpy(p, a.u.s, a.len);
        memcpy(p + a.len, b.u.s, b.len);
        *out = v_bin(p, (size_t)a.len + b.len);
        return EC_OK;
    }
    const char *opname = op == T_PLUS    ? "+"
                         : op == T_MINUS ? "-"
                         : op == T_STAR  ? "*"
                         : op == T_SLASH ? "/"
                         : op == T_DIV   ? "div"
                                         : "mod";
    if (!v_is_number(x) || !v_is_number(y))
        return sql_fn_fail(ev, "bad_sql_function_argument: %s needs two numbers, got %s and %s",
                           opname, kind_of(x), kind_of(y));
    bool ints = x->type == VT_INT && y->type == VT_INT;
    double a = x->type == VT_INT ? (double)x->u.i : x->u.f;
    double b = y->type == VT_INT ? (double)y->u.i : y->u.f;
    int64_t r;
    switch (op) {
    case T_PLUS:
        if (ints && !__builtin_add_overflow(x->u.i, y->u.i, &r))
            *out = v_int(r);
        else
            *out = v_float(a + b);
        return EC_OK;
    case T_MINUS:
        if (ints && !__builtin_sub_overflow(x->u.i, y->u.i, &r))
            *out = v_int(r);
        else
            *out = v_float(a - b);
        return EC_OK;
    case T_STAR:
        if (ints && !__builtin_mul_overflow(x->u.i, y->u.i, &r))
            *out = v_int(r);
        else
            *out = v_float(a * b);
        return EC_OK;
    case T_SLASH:
        if (b == 0) return sql_fn_fail(ev, "badarith: division by zero");
        *out = v_float(a / b);
        return EC_OK;
    default: /* div, mod: integers only, truncated */
        if (!ints)
            return sql_fn_fail(ev, "bad_sql_function_argument: %s needs two integers", opname);
        if (y->u.i == 0) return sql_fn_fail(ev, "badarith: %s by zero", opname);
        if (x->u.i == INT64_MIN && y->u.i == -1) {
            *out = op == T_DIV ? v_float(-(double)INT64_MIN) : v_int(0);
            return EC_OK;
        }
        *out = v_int(op == T_DIV ? x->u.i / y->u.i : x->u.i % y->u.i);
        return EC_OK;
    }
}

/* Comparison with EMQX's coercions (spec §5.6). */
static ec_status compare(ev_state *s, int op, const value *x, const value *y, bool *out) {
    sql_eval *ev = &s->pub;
    if (op == T_TILDE_EQ) return sql_fn_fail(ev, "the operator ~= is not supported");
    if (op == T_MATCH) {
        if (x->type != VT_BIN || y->type != VT_BIN)
            return sql_fn_fail(ev,
                               "bad_sql_function_argument: =~ needs a topic and a topic filter");
        *out = sql_topic_match(x->u.s, x->len, y->u.s, y->len);
        return EC_OK;
    }
    bool xu = x->type == VT_UNDEF, yu = y->type == VT_UNDEF;
    int c;
    if (xu || yu) {
        if (!(xu && yu)) {
            *out = false;
            return EC_OK;
        }
        c = 0;
    } else if (v_is_number(x) && y->type == VT_BIN && !(y->flags & VF_ATOM)) {
        value ny;
        if (!sql_str_to_number(y->u.s, y->len, &ny))
            return sql_fn_fail(ev, "cannot compare number with non-numeric string '%.*s'",
                               (int)(y->len > 40 ? 40 : y->len), y->u.s);
        c = num_cmp(x, &ny);
    } else if (v_is_number(y) && x->type == VT_BIN && !(x->flags & VF_ATOM)) {
        value nx;
        if (!sql_str_to_number(x->u.s, x->len, &nx))
            return sql_fn_fail(ev, "cannot compare number with non-numeric string '%.*s'",
                               (int)(x->len > 40 ? 40 : x->len), x->u.s);
        c = num_cmp(&nx, y);
    } else if ((is_atom(x) && y->type == VT_BIN) || (is_atom(y) && x->type == VT_BIN)) {
        const char *a, *b;
        size_t an, bn;
        atom_text(x, &a, &an);
        atom_text(y, &b, &bn);
        c = bytes_cmp(a, an, b, bn);
    } else {
        c = sql_value_compare(x, y);
    }
    switch (op) {
    case T_EQ: *out = c == 0; break;
    case T_NE: *out = c != 0; break;
    case T_LT: *out = c < 0; break;
    case T_GT: *out = c > 0; break;
    case T_LE: *out = c <= 0; break;
    default: *out = c >= 0; break;
    }
    return EC_OK;
}

static ec_status call(ev_state *s, const sql_node *n, value *out) {
    sql_eval *ev = &s->pub;
    const sql_func *f = n->u.call.fn;
    uint32_t argc = n->u.call.nargs;
    if (!f || argc < f->min_args || (f->max_args != SQL_VARIADIC && argc > f->max_args))
        return sql_fn_fail(ev, "sql_function_not_supported: %.*s/%u", (int)n->u.call.nlen,
                           n->u.call.name, argc);
    if ((f->flags & SF_MESSAGE) && ev->cond) { /* EMQX 5.10.3+: undefined in WHERE/INCASE */
        *out = v_undef();
        if (n->u.call.nlen == 5 && memcmp(n->u.call.name, "flags", 5) == 0) {
            bool ok;
            *out = v_map_new(ev->a, 0, &ok);
            if (!ok) return oom(ev);
        }
        return EC_OK;
    }
    value small[8];
    value *args = argc <= 8 ? small : arena_alloc(ev->a, argc * sizeof(value));
    if (!args) return oom(ev);
    for (uint32_t i = 0; i < argc; i++) {
        ec_status st = eval(s, n->u.call.args[i], &args[i]);
        if (st) return st;
    }
    return f->fn(ev, args, argc, out);
}

static ec_status eval(ev_state *s, const sql_node *n, value *out) {
    sql_eval *ev = &s->pub;
    ec_status st;
    switch ((node_kind)n->kind) {
    case N_CONST: *out = n->u.constant; return EC_OK;
    case N_PATH: return resolve(s, &n->u.path, out);
    case N_LIST: {
        bool ok;
        value arr = v_array_new(ev->a, n->u.list.n, &ok);
        if (!ok) return oom(ev);
        for (uint32_t i = 0; i < n->u.list.n; i++) {
            value item;
            if ((st = eval(s, n->u.list.items[i], &item))) return st;
            if (!v_depth_within(&item, VALUE_MAX_DEPTH - 1))
                return sql_fn_fail(ev, "list nested deeper than %d levels", VALUE_MAX_DEPTH);
            if (!v_array_push(ev->a, &arr, item)) return oom(ev);
        }
        *out = arr;
        return EC_OK;
    }
    case N_RANGE: {
        int64_t lo = n->u.range.lo, hi = n->u.range.hi;
        bool ok;
        uint64_t count = hi >= lo ? (uint64_t)hi - (uint64_t)lo + 1 : 0;
        if (count > 1000000)
            return sql_fn_fail(ev, "range [%lld..%lld] has more than 1000000 items", (long long)lo,
                               (long long)hi);
        value arr = v_array_new(ev->a, count ? (uint32_t)count : 1, &ok);
        if (!ok) return oom(ev);
        for (uint64_t i = 0; i < count; i++)
            if (!v_array_push(ev->a, &arr, v_int(lo + (int64_t)i))) return oom(ev);
        *out = arr;
        return EC_OK;
    }
    case N_SLICE: {
        value src;
        if ((st = eval(s, n->u.slice.of, &src))) return st;
        if (src.type != VT_ARRAY) return sql_fn_fail(ev, "range_get: non_list_data");
        int64_t len = src.len, lo = n->u.slice.lo, hi = n->u.slice.hi;
        if (lo == 0 || hi == 0) return sql_fn_fail(ev, "range_get: invalid_index 0");
        if (lo < 0) lo = len + 1 + lo;
        if (hi < 0) hi = len + 1 + hi;
        if (lo < 1) lo = 1;
        if (hi > len) hi = len;
        bool ok;
        value arr = v_array_new(ev->a, hi >= lo ? (uint32_t)(hi - lo + 1) : 1, &ok);
        if (!ok) return oom(ev);
        for (int64_t i = lo; i <= hi; i++)
            if (!v_array_push(ev->a, &arr, src.u.items[i - 1])) return oom(ev);
        *out = arr;
        return EC_OK;
    }
    case N_CALL: return call(s, n, out);
    case N_NEG: {
        value v;
        if ((st = eval(s, n->u.operand, &v))) return st;
        if (v.type == VT_INT && v.u.i != INT64_MIN)
            *out = v_int(-v.u.i);
        else if (v.type == VT_INT)
            *out = v_float(-(double)v.u.i);
        else if (v.type == VT_FLOAT)
            *out = v_float(-v.u.f);
        else
            return sql_fn_fail(ev, "bad_sql_function_argument: cannot negate %s", kind_of(&v));
        return EC_OK;
    }
    case N_ARITH: {
        value x, y;
        if ((st = eval(s, n->u.bin.l, &x)) || (st = eval(s, n->u.bin.r, &y))) return st;
        return arith(s, n->op, &x, &y, out);
    }
    case N_CMP: {
        value x, y;
        bool b;
        if ((st = eval(s, n->u.bin.l, &x)) || (st = eval(s, n->u.bin.r, &y))) return st;
        if ((st = compare(s, n->op, &x, &y, &b))) return st;
        *out = v_bool(b);
        return EC_OK;
    }
    case N_CASE: {
        const sql_node *chosen = n->u.kase.els;
        value subject;
        if (n->u.kase.subject && (st = eval(s, n->u.kase.subject, &subject))) return st;
        for (uint32_t i = 0; i < n->u.kase.n; i++) {
            bool hit;
            if (n->u.kase.subject) {
                value w;
                if ((st = eval(s, n->u.kase.whens[i], &w))) return st;
                hit = v_equal(&subject, &w); /* exact term equality */
            } else {
                bool saved = ev->cond;
                const value *saved_sel = ev->selected;
                st = cond(s, n->u.kase.whens[i], &hit);
                ev->cond = saved;
                ev->selected = saved_sel;
                if (st) return st;
            }
            if (hit) {
                chosen = n->u.kase.thens[i];
                break;
            }
        }
        if (!chosen) {
            *out = v_undef();
            return EC_OK;
        }
        return eval(s, chosen, out);
    }
    case N_AND:
    case N_OR:
    case N_NOT:
    case N_IN: {
        bool b;
        if ((st = cond(s, n, &b))) return st;
        *out = v_bool(b);
        return EC_OK;
    }
    }
    return sql_fn_fail(ev, "unknown expression");
}

/* Conditions (spec §5.8). */
static ec_status cond(ev_state *s, const sql_node *n, bool *out) {
    sql_eval *ev = &s->pub;
    ec_status st;
    switch ((node_kind)n->kind) {
    case N_AND:
        if ((st = cond(s, n->u.bin.l, out))) return st;
        if (!*out) return EC_OK;
        return cond(s, n->u.bin.r, out);
    case N_OR:
        if ((st = cond(s, n->u.bin.l, out))) return st;
        if (*out) return EC_OK;
        return cond(s, n->u.bin.r, out);
    case N_NOT: {
        const sql_node *o = n->u.operand;
        if (o->kind == N_AND || o->kind == N_OR || o->kind == N_NOT || o->kind == N_IN)
            return sql_fn_fail(ev,
                               "NOT of AND/OR/NOT/IN cannot be evaluated (EMQX 5.10 behaviour); "
                               "rewrite it with De Morgan's laws");
        value v;
        if ((st = eval(s, o, &v))) return st;
        *out = v.type == VT_BOOL ? !v.u.b : false;
        return EC_OK;
    }
    case N_IN: {
        if (n->negated)
            return sql_fn_fail(
                ev, "NOT IN cannot be evaluated (EMQX 5.10 behaviour); use NOT (x = a) AND ...");
        value x;
        if ((st = eval(s, n->u.in.subject, &x))) return st;
        for (uint32_t i = 0; i < n->u.in.n; i++) {
            value item;
            if ((st = eval(s, n->u.in.items[i], &item))) return st;
            if (x.type == item.type && v_equal(&x, &item)) {
                *out = true;
                return EC_OK;
            }
        }
        *out = false;
        return EC_OK;
    }
    case N_CMP: {
        value x, y;
        if ((st = eval(s, n->u.bin.l, &x)) || (st = eval(s, n->u.bin.r, &y))) return st;
        return compare(s, n->op, &x, &y, out);
    }
    case N_CALL: {
        value v;
        if ((st = eval(s, n, &v))) return st;
        if (v.type != VT_BOOL)
            return sql_fn_fail(ev, "the condition %.*s(...) returned %s, not a boolean",
                               (int)n->u.call.nlen, n->u.call.name, kind_of(&v));
        *out = v.u.b;
        return EC_OK;
    }
    case N_CONST:
        if (n->u.constant.type == VT_BOOL) {
            *out = n->u.constant.u.b;
            return EC_OK;
        }
        break;
    default: break;
    }
    return sql_fn_fail(ev, "a bare value cannot be a condition (write e.g. payload.ok = true)");
}

/* ---- statements -------------------------------------------------------- */

static ec_status select_fields(ev_state *s, const sql_field *fields, uint32_t n, value *sel,
                               bool star_all_layers) {
    sql_eval *ev = &s->pub;
    bool ok;
    *sel = v_map_new(ev->a, n + 4, &ok);
    if (!ok) return oom(ev);
    for (uint32_t i = 0; i < n; i++) {
        const sql_field *f = &fields[i];
        ec_status st;
        if (f->star) {
            if (star_all_layers) { /* DO *: columns, selected, item */
                if ((st = merge_columns(s, sel))) return st;
                for (int l = s->nlayers - 1; l >= 0; l--)
                    if (!s->columns_layer[l] && (st = merge_into(ev, sel, s->layers[l]))) return st;
            } else if ((st = merge_columns(s, sel))) {
                return st;
            }
            continue;
        }
        ev->selected = sel;
        value v;
        st = eval(s, f->expr, &v);
        if (st) return st;
        if ((st = write_target(ev, sel, &f->target, v))) return st;
    }
    ev->selected = NULL;
    return EC_OK;
}

static ec_status eval_where(ev_state *s, const sql_node *where, const value *sel, bool *pass) {
    if (!where) {
        *pass = true;
        return EC_OK;
    }
    s->layers[0] = sel;
    s->columns_layer[0] = false;
    s->layers[1] = s->pub.msg->columns;
    s->columns_layer[1] = true;
    s->nlayers = 2;
    s->pub.cond = true;
    s->pub.selected = NULL;
    ec_status st = cond(s, where, pass);
    s->pub.cond = false;
    s->nlayers = 1;
    s->layers[0] = s->pub.msg->columns;
    s->columns_layer[0] = true;
    return st;
}

static sql_outcome fail_with(ev_state *s, const char *phase, ec_status st) {
    if (s->pub.err && st != EC_ENOMEM) {
        char tmp[EC_ERRMSG_MAX];
        snprintf(tmp, sizeof tmp, "%s: %s", phase, s->pub.err->msg);
        memcpy(s->pub.err->msg, tmp, sizeof tmp);
    }
    return SQL_EXCEPTION;
}

static sql_outcome eval_foreach(ev_state *s, const sql_stmt *stmt, value *out) {
    sql_eval *ev = &s->pub;
    uint32_t n = stmt->nfields;
    value sel;
    ec_status st = select_fields(s, stmt->fields, n - 1, &sel, false);
    if (st) return fail_with(s, "select_and_collect_error", st);
    /* the collection: the last field */
    const sql_field *cf = &stmt->fields[n - 1];
    value coll;
    ev->selected = &sel;
    st = eval(s, cf->expr, &coll);
    ev->selected = NULL;
    if (st) return fail_with(s, "select_and_collect_error", st);
    if (cf->expr->kind == N_PATH && cf->expr->u.path.n == 1 &&
        seg_is(&cf->expr->u.path.segs[0], "payload") && coll.type == VT_BIN) {
        const value *pj;
        if ((st = sql_eval_payload_json(ev, &pj)))
            return fail_with(s, "select_and_collect_error", st);
        coll = *pj;
    }
    if ((st = write_target(ev, &sel, &cf->target, coll)))
        return fail_with(s, "select_and_collect_error", st);
    const char *item_name = "item";
    size_t item_len = 4;
    if (cf->has_alias && cf->target.n >= 1) {
        item_name = cf->target.segs[0].key;
        item_len = cf->target.segs[0].klen;
    }
    bool pass;
    if ((st = eval_where(s, stmt->where, &sel, &pass)))
        return fail_with(s, "match_conditions_error", st);
    if (!pass || coll.type != VT_ARRAY || coll.len == 0) return SQL_NO_RESULT;
    bool ok;
    value results = v_array_new(ev->a, coll.len, &ok);
    if (!ok) return fail_with(s, "select_and_collect_error", oom(ev));
    for (uint32_t i = 0; i < coll.len; i++) {
        value item_map = v_map_new(ev->a, 1, &ok);
        if (!ok || !v_map_append(ev->a, &item_map, v_bin(item_name, item_len), coll.u.items[i]))
            return fail_with(s, "doeach_error", oom(ev));
        s->layers[0] = &item_map;
        s->columns_layer[0] = false;
        s->layers[1] = &sel;
        s->columns_layer[1] = false;
        s->layers[2] = ev->msg->columns;
        s->columns_layer[2] = true;
        s->nlayers = 3;
        if (stmt->incase) {
            bool keep;
            ev->cond = true;
            st = cond(s, stmt->incase, &keep);
            ev->cond = false;
            if (st) return fail_with(s, "match_incase_error", st);
            if (!keep) continue;
        }
        value one;
        if (stmt->has_do) {
            if ((st = select_fields(s, stmt->do_fields, stmt->ndo, &one, true)))
                return fail_with(s, "doeach_error", st);
        } else {
            one = v_map_new(ev->a, ev->msg->columns->len + sel.len + 2, &ok);
            if (!ok || (st = merge_columns(s, &one)) || (st = merge_into(ev, &one, &sel)) ||
                (st = merge_into(ev, &one, &item_map)))
                return fail_with(s, "doeach_error", ok ? st : oom(ev));
        }
        if (!v_array_push(ev->a, &results, one)) return fail_with(s, "doeach_error", oom(ev));
    }
    if (results.len == 0) return SQL_NO_RESULT;
    *out = results;
    return SQL_MATCHED;
}

sql_outcome sql_eval_stmt(const sql_stmt *stmt, sql_msg *msg, const char *rule_id,
                          size_t rule_id_len, arena *a, value *out, ec_error *err) {
    ev_state s;
    memset(&s, 0, sizeof s);
    s.pub.a = a;
    s.pub.msg = msg;
    s.pub.err = err;
    bool ok;
    s.pub.metadata = v_map_new(a, 1, &ok);
    if (!ok || !v_map_append(a, &s.pub.metadata, V_ATOM("rule_id"), v_bin(rule_id, rule_id_len))) {
        ec_fail(err, EC_ENOMEM, "out of memory evaluating rule");
        return SQL_EXCEPTION;
    }
    s.layers[0] = msg->columns;
    s.columns_layer[0] = true;
    s.nlayers = 1;
    if (stmt->foreach) return eval_foreach(&s, stmt, out);
    value sel;
    ec_status st = select_fields(&s, stmt->fields, stmt->nfields, &sel, false);
    if (st) return fail_with(&s, "select_and_transform_error", st);
    bool pass;
    if ((st = eval_where(&s, stmt->where, &sel, &pass)))
        return fail_with(&s, "match_conditions_error", st);
    if (!pass) return SQL_NO_RESULT;
    *out = sel;
    return SQL_MATCHED;
}

/* nif_rules.c - rule SQL through the NIF: compile, rule sets (index), evaluate
 * one message/event, and the JSON rule tester shared with the CLI.
 *
 *   rule_compile(Id, Sql)      -> {ok, Rule} | {error, #{message, line, column, ...}}
 *   ruleset_new([Rule])        -> {ok, RuleSet}     (immutable; rebuild to change)
 *   ruleset_eval(RuleSet, Cols) -> [{RuleId, {ok, Output} | no_result | {error, Msg}}]
 *   rule_test(RequestJson)     -> AnswerJson        (design.md §3.2 format)
 *
 * Cols is the column map of one publish (or event, with an `event` key other
 * than message.publish); its binaries are borrowed, not copied. */
#include <string.h>

#include "../core/json.h"
#include "../sql/sql_eval.h"
#include "../sql/sql_rules.h"
#include "../tester/tester.h"
#include "nif_atoms.h"
#include "nif_priv.h"
#include "nif_term.h"

ErlNifResourceType *nif_rule_type, *nif_ruleset_type;

#define NIF_EVAL_DIRTY_BYTES                                                                       \
    (64 * 1024) /* payloads above this evaluate on a dirty CPU scheduler                           \
                 */

typedef struct rule_res {
    sql_rule *rule;
} rule_res;

typedef struct ruleset_res {
    rule_index *ix;
    sql_rule **rules;   /* borrowed from the rule resources kept below */
    rule_res **holders; /* enif_keep_resource'd */
    size_t n;
} ruleset_res;

static void rule_dtor(ErlNifEnv *env, void *obj) {
    (void)env;
    sql_rule_free(((rule_res *)obj)->rule);
    atomic_fetch_sub(&nif_live_resources, 1);
}

static void ruleset_dtor(ErlNifEnv *env, void *obj) {
    (void)env;
    ruleset_res *s = obj;
    rule_index_free(s->ix);
    for (size_t i = 0; i < s->n; i++)
        if (s->holders[i]) enif_release_resource(s->holders[i]);
    enif_free(s->holders);
    enif_free(s->rules);
    atomic_fetch_sub(&nif_live_resources, 1);
}

int nif_rules_open_types(ErlNifEnv *env, ErlNifResourceFlags flags) {
    nif_rule_type = enif_open_resource_type(env, NULL, "ec_rule", rule_dtor, flags, NULL);
    nif_ruleset_type = enif_open_resource_type(env, NULL, "ec_ruleset", ruleset_dtor, flags, NULL);
    return nif_rule_type && nif_ruleset_type ? 0 : -1;
}

/* Normal scheduler: bounded by SQL_MAX_BYTES (64 KiB), parsed in well under 1 ms. */
ERL_NIF_TERM nif_rule_compile(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    ErlNifBinary id, sql;
    if (!enif_inspect_iolist_as_binary(env, argv[0], &id) ||
        !enif_inspect_iolist_as_binary(env, argv[1], &sql))
        return enif_make_badarg(env);
    sql_rule *r;
    ec_error err;
    if (sql_rule_compile((const char *)id.data, id.size, (const char *)sql.data, sql.size, &r,
                         &err) != EC_OK)
        return nif_error_term(env, &err);
    rule_res *res = enif_alloc_resource(nif_rule_type, sizeof *res);
    res->rule = r;
    atomic_fetch_add(&nif_live_resources, 1);
    ERL_NIF_TERM t = enif_make_resource(env, res);
    enif_release_resource(res);
    return enif_make_tuple2(env, ATOM_ok, t);
}

/* Normal scheduler: the index build is linear in the FROM filters. */
ERL_NIF_TERM nif_ruleset_new(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    unsigned n;
    if (!enif_get_list_length(env, argv[0], &n)) return enif_make_badarg(env);
    ruleset_res *s = enif_alloc_resource(nif_ruleset_type, sizeof *s);
    memset(s, 0, sizeof *s);
    atomic_fetch_add(&nif_live_resources, 1);
    s->rules = enif_alloc(sizeof *s->rules * (n ? n : 1));
    s->holders = enif_alloc(sizeof *s->holders * (n ? n : 1));
    ERL_NIF_TERM head, tail = argv[0];
    while (enif_get_list_cell(env, tail, &head, &tail)) {
        rule_res *r;
        if (!enif_get_resource(env, head, nif_rule_type, (void **)&r)) {
            enif_release_resource(s); /* dtor releases what was kept so far */
            return enif_make_badarg(env);
        }
        enif_keep_resource(r);
        s->holders[s->n] = r;
        s->rules[s->n] = r->rule;
        s->n++;
    }
    ec_error err;
    if (rule_index_build(s->rules, s->n, &s->ix, &err) != EC_OK) {
        enif_release_resource(s);
        return nif_error_term(env, &err);
    }
    ERL_NIF_TERM t = enif_make_resource(env, s);
    enif_release_resource(s);
    return enif_make_tuple2(env, ATOM_ok, t);
}

static ERL_NIF_TERM eval_now(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    ruleset_res *s;
    if (!enif_get_resource(env, argv[0], nif_ruleset_type, (void **)&s) ||
        !enif_is_map(env, argv[1]))
        return enif_make_badarg(env);
    arena a;
    arena_init(&a, 16384);
    value cols;
    ec_error err;
    if (nif_term_to_value(env, argv[1], &a, &cols, &err) != EC_OK) {
        arena_free(&a);
        return nif_error_term(env, &err);
    }
    for (uint32_t i = 0; i < cols.len; i++)
        cols.u.pairs[i].key.flags |= VF_ATOM;
    uint32_t *idx;
    size_t n = rule_index_match_columns(s->ix, &cols, &a, &idx);
    if (n == (size_t)-1) {
        arena_free(&a);
        return nif_error_term(env, &(ec_error){.code = EC_ENOMEM, .msg = "out of memory"});
    }
    sql_msg msg;
    sql_msg_init(&msg, &cols);
    ERL_NIF_TERM results = enif_make_list(env, 0);
    for (size_t k = n; k > 0; k--) { /* built backwards: the list comes out in rule order */
        sql_rule *r = s->rules[idx[k - 1]];
        value out;
        ERL_NIF_TERM res;
        switch ((sql_outcome)sql_rule_eval(r, &msg, &a, &out, &err)) {
        case SQL_MATCHED: res = enif_make_tuple2(env, ATOM_ok, nif_value_to_term(env, &out)); break;
        case SQL_NO_RESULT: res = ATOM_no_result; break;
        default:
            res = enif_make_tuple2(env, ATOM_error, nif_make_binary(env, err.msg, strlen(err.msg)));
        }
        results = enif_make_list_cell(
            env, enif_make_tuple2(env, nif_make_binary(env, r->id, r->id_len), res), results);
    }
    arena_free(&a);
    return results;
}

/* Normal scheduler for ordinary messages; a payload above NIF_EVAL_DIRTY_BYTES
 * moves the evaluation to a dirty CPU scheduler (decoding and functions scale
 * with it). */
ERL_NIF_TERM nif_ruleset_eval(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    ERL_NIF_TERM payload;
    ErlNifBinary pb;
    if (enif_is_map(env, argv[1]) && enif_get_map_value(env, argv[1], ATOM_payload, &payload) &&
        enif_inspect_binary(env, payload, &pb) && pb.size > NIF_EVAL_DIRTY_BYTES)
        return enif_schedule_nif(env, "ruleset_eval_dirty", ERL_NIF_DIRTY_JOB_CPU_BOUND, eval_now,
                                 argc, argv);
    return eval_now(env, argc, argv);
}

/* rule_metrics(Rule) -> #{matched, passed, failed, 'failed.exception', ...} */
ERL_NIF_TERM nif_rule_metrics(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    rule_res *r;
    if (!enif_get_resource(env, argv[0], nif_rule_type, (void **)&r)) return enif_make_badarg(env);
    const sql_rule_metrics *m = &r->rule->metrics;
    struct {
        const char *name;
        const _Atomic uint64_t *v;
    } rows[] = {{"matched", &m->matched},
                {"passed", &m->passed},
                {"failed", &m->failed},
                {"failed.exception", &m->failed_exception},
                {"failed.no_result", &m->failed_no_result},
                {"actions.total", &m->actions_total},
                {"actions.success", &m->actions_success},
                {"actions.failed", &m->actions_failed}};
    ERL_NIF_TERM map = enif_make_new_map(env);
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
        enif_make_map_put(env, map, enif_make_atom(env, rows[i].name),
                          enif_make_uint64(env, atomic_load(rows[i].v)), &map);
    return map;
}

ERL_NIF_TERM nif_rule_metrics_reset(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    rule_res *r;
    if (!enif_get_resource(env, argv[0], nif_rule_type, (void **)&r)) return enif_make_badarg(env);
    sql_rule_metrics_reset(r->rule);
    return ATOM_ok;
}

/* rule_from(Rule) -> [Topic]: the FROM entries, as written. */
ERL_NIF_TERM nif_rule_from(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    rule_res *r;
    if (!enif_get_resource(env, argv[0], nif_rule_type, (void **)&r)) return enif_make_badarg(env);
    const sql_stmt *st = &r->rule->stmt;
    ERL_NIF_TERM list = enif_make_list(env, 0);
    for (uint32_t i = st->nfrom; i > 0; i--) {
        ERL_NIF_TERM t;
        unsigned char *d = enif_make_new_binary(env, st->from[i - 1].len, &t);
        memcpy(d, st->from[i - 1].topic, st->from[i - 1].len);
        list = enif_make_list_cell(env, t, list);
    }
    return list;
}

/* Registered dirty CPU: a request may run any function on any payload. */
ERL_NIF_TERM nif_rule_test(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    ErlNifBinary req;
    if (!enif_inspect_iolist_as_binary(env, argv[0], &req)) return enif_make_badarg(env);
    arena a;
    arena_init(&a, 16384);
    ec_buf out;
    buf_init(&out);
    tester_answer((const char *)req.data, req.size, &a, &out);
    ERL_NIF_TERM t = nif_make_binary(env, out.p, out.len);
    buf_free(&out);
    arena_free(&a);
    return t;
}

void nif_rule_count_delivery(void *res, bool counted, bool ok) {
    rule_res *r = res;
    if (counted)
        atomic_fetch_add(ok ? &r->rule->metrics.actions_success : &r->rule->metrics.actions_failed,
                         1);
    enif_release_resource(r);
}

void **nif_ruleset_holders(void *ruleset) {
    return (void **)((ruleset_res *)ruleset)->holders;
}

rule_index *nif_ruleset_index(void *ruleset, sql_rule ***rules, size_t *n) {
    ruleset_res *s = ruleset;
    *rules = s->rules;
    *n = s->n;
    return s->ix;
}

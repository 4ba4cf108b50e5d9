/* sql_tester.c - the rule tester's request/answer logic; see sql_tester.h. */
#include "sql_tester.h"

#include "../tester/tester.h"

#include <stdio.h>
#include <string.h>

#include "../core/json.h"
#include "sql_eval.h"
#include "sql_rules.h"

void tester_error(ec_buf *out, const char *msg) {
    buf_clear(out);
    buf_puts(out, "{\"error\":");
    json_encode_string(msg, strlen(msg), out);
    buf_putc(out, '}');
}

/* EMQX keeps columns as atoms (and the event name too): mark them so output
 * key order and is_str() behave as in EMQX. */
static void mark_atoms(value *ctx) {
    for (uint32_t i = 0; i < ctx->len; i++) {
        vpair *p = &ctx->u.pairs[i];
        p->key.flags |= VF_ATOM;
        if (p->key.len == 5 && memcmp(p->key.u.s, "event", 5) == 0 && p->val.type == VT_BIN)
            p->val.flags |= VF_ATOM;
    }
}

static void answer_sql(const value *req, const value *sql, arena *a, ec_buf *out) {
    if (sql->type != VT_BIN) {
        tester_error(out, "\"sql\" must be a string");
        return;
    }
    const value *ctxv = V_MAP_GET(req, "context");
    const value *rid = V_MAP_GET(req, "rule_id");
    value ctx;
    bool ok;
    if (ctxv && ctxv->type != VT_MAP) {
        tester_error(out, "\"context\" must be an object");
        return;
    }
    ctx = ctxv ? *ctxv : v_map_new(a, 0, &ok);
    if (rid && rid->type != VT_BIN) {
        tester_error(out, "\"rule_id\" must be a string");
        return;
    }
    mark_atoms(&ctx);
    const char *rule_id = rid ? rid->u.s : "rule1";
    size_t rid_len = rid ? rid->len : 5;
    sql_rule *rule;
    ec_error err;
    if (sql_rule_compile(rule_id, rid_len, sql->u.s, sql->len, &rule, &err) != EC_OK) {
        tester_error(out, err.msg);
        return;
    }
    const value *event = V_MAP_GET(&ctx, "event");
    bool triggered;
    if (event && event->type == VT_BIN &&
        !(event->len == 15 && memcmp(event->u.s, "message.publish", 15) == 0)) {
        const sql_event_def *ed = sql_event_by_name(event->u.s, event->len);
        if (!ed) {
            char msg[160];
            snprintf(msg, sizeof msg, "unknown event '%.*s'",
                     (int)(event->len > 80 ? 80 : event->len), event->u.s);
            tester_error(out, msg);
            sql_rule_free(rule);
            return;
        }
        triggered = sql_rule_wants_event(rule, ed);
    } else {
        const value *topic = V_MAP_GET(&ctx, "topic");
        triggered =
            topic && topic->type == VT_BIN && sql_rule_wants_topic(rule, topic->u.s, topic->len);
    }
    buf_clear(out);
    if (!triggered) {
        buf_puts(out, "{\"matched\":false}");
        sql_rule_free(rule);
        return;
    }
    sql_msg msg;
    sql_msg_init(&msg, &ctx);
    value result;
    switch (sql_eval_stmt(&rule->stmt, &msg, rule->id, rule->id_len, a, &result, &err)) {
    case SQL_MATCHED:
        buf_puts(out, "{\"matched\":true,\"output\":");
        if (!json_encode(&result, out)) {
            tester_error(out, "cannot encode the output");
            break;
        }
        buf_putc(out, '}');
        break;
    case SQL_NO_RESULT: buf_puts(out, "{\"matched\":false}"); break;
    case SQL_EXCEPTION: tester_error(out, err.msg); break;
    }
    sql_rule_free(rule);
}

void sql_tester_request(const value *req, arena *a, ec_buf *out) {
    answer_sql(req, V_MAP_GET(req, "sql"), a, out);
}

/* sql_fn_msg.c - message helpers (rule-functions §13): read the message's
 * columns. Registered with SF_MESSAGE: in WHERE/INCASE they give undefined,
 * as in EMQX 5.10.3+ (the evaluator handles that before calling them). */
#include "../core/json.h"
#include "sql_fn.h"

static ec_status column(sql_eval *ev, const char *name, value *out) {
    const value *v = sql_eval_column(ev, name, strlen(name));
    *out = v ? *v : v_undef();
    return EC_OK;
}

FN(clientid) {
    UNUSED_ARGS;
    return column(ev, "clientid", out);
}
FN(username) {
    UNUSED_ARGS;
    return column(ev, "username", out);
}
FN(qos) {
    UNUSED_ARGS;
    return column(ev, "qos", out);
}
FN(msgid) {
    UNUSED_ARGS;
    return column(ev, "id", out);
}
FN(peerhost) {
    UNUSED_ARGS;
    return column(ev, "peerhost", out);
}

FN(topic) {
    value t;
    column(ev, "topic", &t);
    if (n == 0) {
        *out = t;
        return EC_OK;
    }
    NEED_INT("topic", 0, k);
    if (t.type != VT_BIN) return sql_fn_fail(ev, "topic: the message has no topic");
    int64_t level = 1;
    uint32_t start = 0;
    for (uint32_t i = 0; i <= t.len; i++) {
        if (i == t.len || t.u.s[i] == '/') {
            if (level == k) {
                *out = v_bin(t.u.s + start, i - start);
                return EC_OK;
            }
            level++;
            start = i + 1;
        }
    }
    return sql_fn_fail(ev, "topic: level %lld out of range", (long long)k);
}

FN(payload) {
    if (n == 0) return column(ev, "payload", out);
    NEED_TEXT("payload", 0, path, plen);
    const value *pj;
    if (sql_eval_payload_json(ev, &pj) != EC_OK) { /* not JSON: undefined, not an error */
        *out = v_undef();
        return EC_OK;
    }
    value cur = *pj;
    size_t i = 0;
    while (i <= plen) {
        size_t j = i;
        while (j < plen && path[j] != '.')
            j++;
        const value *next = cur.type == VT_MAP ? v_map_get(&cur, path + i, j - i) : NULL;
        if (!next) {
            *out = v_undef();
            return EC_OK;
        }
        cur = *next;
        i = j + 1;
    }
    *out = cur;
    return EC_OK;
}

FN(flags) {
    UNUSED_ARGS;
    const value *v = sql_eval_column(ev, "flags", 5);
    if (v) {
        *out = *v;
        return EC_OK;
    }
    bool ok;
    *out = v_map_new(ev->a, 0, &ok);
    return ok ? EC_OK : fn_oom(ev);
}

FN(flag) {
    UNUSED_ARGS;
    NEED_TEXT("flag", 0, name, len);
    const value *f = sql_eval_column(ev, "flags", 5);
    const value *v = f && f->type == VT_MAP ? v_map_get(f, name, len) : NULL;
    *out = v ? *v : v_undef();
    return EC_OK;
}

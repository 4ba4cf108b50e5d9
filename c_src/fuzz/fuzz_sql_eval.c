/* fuzz_sql_eval.c - libFuzzer target: a rule and a payload.
 * Input: SQL, a NUL byte, then the MQTT payload (arbitrary bytes). The rule is
 * evaluated against a publish on t/1 carrying that payload. Oracle: no
 * crash/leak/UB; an exception always carries a message; a matched output
 * always encodes as JSON. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../core/json.h"
#include "../sql/sql_eval.h"
#include "../sql/sql_rules.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *nul = memchr(data, 0, size);
    size_t sql_len = nul ? (size_t)(nul - data) : size;
    const char *payload = nul ? (const char *)nul + 1 : "";
    size_t plen = nul ? size - sql_len - 1 : 0;
    sql_rule *r;
    ec_error err;
    if (sql_rule_compile("fz", 2, (const char *)data, sql_len, &r, &err) != EC_OK) return 0;
    arena a;
    arena_init(&a, 4096);
    bool ok;
    value cols = v_map_new(&a, 8, &ok);
    v_map_append(&a, &cols, V_ATOM("topic"), V_LIT("t/1"));
    v_map_append(&a, &cols, V_ATOM("clientid"), V_LIT("c1"));
    v_map_append(&a, &cols, V_ATOM("qos"), v_int(1));
    v_map_append(&a, &cols, V_ATOM("payload"), v_bin(payload, plen));
    sql_msg m;
    sql_msg_init(&m, &cols);
    value out;
    sql_outcome o = sql_eval_stmt(&r->stmt, &m, r->id, r->id_len, &a, &out, &err);
    if (o == SQL_EXCEPTION && err.msg[0] == '\0') abort();
    if (o == SQL_MATCHED) {
        ec_buf b;
        buf_init(&b);
        if (!json_encode(&out, &b) && !b.oom) abort();
        buf_free(&b);
    }
    arena_free(&a);
    sql_rule_free(r);
    return 0;
}

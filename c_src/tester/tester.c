/* tester.c - request dispatch for the rule tester; see tester.h. */
#include "tester.h"

#include <stdio.h>

#include "../core/json.h"
#include "../sink/tmpl_tester.h"
#include "../sql/sql_tester.h"

void tester_answer(const char *line, size_t len, arena *a, ec_buf *out) {
    value req;
    ec_error err;
    if (json_decode(a, line, len, NULL, &req, &err) != EC_OK) {
        char msg[EC_ERRMSG_MAX + 32];
        snprintf(msg, sizeof msg, "invalid JSON request: %s", err.msg);
        tester_error(out, msg);
        return;
    }
    if (req.type != VT_MAP)
        tester_error(out, "a request must be a JSON object with \"sql\" or \"template\"");
    else if (V_MAP_GET(&req, "sql"))
        sql_tester_request(&req, a, out);
    else if (V_MAP_GET(&req, "template"))
        tmpl_tester_request(&req, a, out);
    else
        tester_error(out, "a request must have \"sql\" or \"template\"");
}

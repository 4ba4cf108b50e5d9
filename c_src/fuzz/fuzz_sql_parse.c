/* fuzz_sql_parse.c - libFuzzer target: any text through the SQL lexer and
 * parser. Oracle: no crash/leak/UB; a failure is a parse/limit error with a
 * message, never anything else. */
#include <stdint.h>
#include <stdlib.h>

#include "../sql/sql_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    arena a;
    arena_init(&a, 4096);
    sql_stmt s;
    ec_error err;
    ec_status st = sql_parse(&a, (const char *)data, size, &s, &err);
    if (st != EC_OK && st != EC_EPARSE && st != EC_ELIMIT && st != EC_ENOMEM) abort();
    if (st != EC_OK && err.msg[0] == '\0') abort();
    arena_free(&a);
    return 0;
}

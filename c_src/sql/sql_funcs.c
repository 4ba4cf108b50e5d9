/* sql_funcs.c - the one table of built-in rule SQL functions, and shared
 * helpers. Every function of spec/rule-functions.md that is not marked
 * optional is here; unknown names fail at evaluation (as EMQX does). */
#include "sql_funcs.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sql_fn.h"

// clang-format off
#define DECL(name) ec_status fn_##name(sql_eval *, const value *, uint32_t, value *);
#define SQL_FUNC_LIST(X)                                                                           \
    /* math */                                                                                     \
    X(abs)                                                                                         \
    X(ceil)                                                                                        \
    X(floor)                                                                                       \
    X(round)                                                                                       \
    X(sqrt)                                                                                        \
    X(power)                                                                                       \
    X(exp) X(log) X(log10) X(log2) X(fmod) X(sin) X(cos) X(tan) X(asin) X(acos) X(atan) X(sinh)    \
        X(cosh) X(tanh) X(asinh) X(acosh) X(atanh) X(random) X(div) X(mod) /* bits */              \
        X(bitand) X(bitor) X(bitxor) X(bitnot) X(bitsl) X(bitsr) X(bitsize) X(bytesize)            \
            X(subbits) /* conversion and checks */                                                 \
        X(str) X(str_utf8) X(str_utf16_le) X(int) X(float) X(float2str) X(bool) X(map)             \
            X(bin2hexstr) X(sqlserver_bin2hexstr) X(hexstr2bin) X(is_null) X(is_null_var)          \
                X(is_not_null) X(is_not_null_var) X(is_str) X(is_bool) X(is_int) X(is_float)       \
                    X(is_num) X(is_map) X(is_array) X(is_empty) X(coalesce) X(coalesce_ne)         \
                        X(null) /* strings */                                                      \
        X(lower) X(upper) X(trim) X(ltrim) X(rtrim) X(reverse) X(strlen) X(substr) X(split)        \
            X(tokens) X(concat) X(sprintf) X(sprintf_s) X(pad) X(replace) X(regex_match)           \
                X(regex_replace) X(regex_extract) X(ascii) X(find) X(rm_prefix) X(join_to_string)  \
                    X(unescape) X(join_to_sql_values_string) /* maps and arrays */                 \
        X(map_new) X(map_get) X(map_put) X(mget) X(mput) X(map_keys) X(map_values) X(map_size)     \
            X(map_to_entries) X(nth) X(length) X(sublist) X(first) X(last)                         \
                X(contains) /* hashing, compression, encoding */                                   \
        X(md5) X(sha) X(sha256) X(hash) X(gzip) X(gunzip) X(zip) X(unzip) X(zip_compress)          \
            X(zip_uncompress) X(base64_encode) X(base64_decode) X(json_encode)                     \
                X(json_decode) /* time, ids, environment */                                        \
        X(now_timestamp) X(now_rfc3339) X(unix_ts_to_rfc3339) X(rfc3339_to_unix_ts) X(format_date) \
            X(date_to_unix_ts) X(timezone_to_offset_seconds) X(uuid_v4) X(uuid_v4_no_hyphen)       \
                X(getenv) /* message helpers */                                                    \
        X(clientid) X(username) X(qos) X(topic) X(msgid) X(peerhost) X(payload) X(flags) X(flag)

SQL_FUNC_LIST(DECL)
#undef DECL
// clang-format on

#define V SQL_VARIADIC
/* name, min arity, max arity, flags, implementation. Sorted by name at first
 * use for binary search. */
static sql_func table[] = {
    {"abs", 1, 1, 0, fn_abs},
    {"ceil", 1, 1, 0, fn_ceil},
    {"floor", 1, 1, 0, fn_floor},
    {"round", 1, 1, 0, fn_round},
    {"sqrt", 1, 1, 0, fn_sqrt},
    {"power", 2, 2, 0, fn_power},
    {"exp", 1, 1, 0, fn_exp},
    {"log", 1, 1, 0, fn_log},
    {"log10", 1, 1, 0, fn_log10},
    {"log2", 1, 1, 0, fn_log2},
    {"fmod", 2, 2, 0, fn_fmod},
    {"sin", 1, 1, 0, fn_sin},
    {"cos", 1, 1, 0, fn_cos},
    {"tan", 1, 1, 0, fn_tan},
    {"asin", 1, 1, 0, fn_asin},
    {"acos", 1, 1, 0, fn_acos},
    {"atan", 1, 1, 0, fn_atan},
    {"sinh", 1, 1, 0, fn_sinh},
    {"cosh", 1, 1, 0, fn_cosh},
    {"tanh", 1, 1, 0, fn_tanh},
    {"asinh", 1, 1, 0, fn_asinh},
    {"acosh", 1, 1, 0, fn_acosh},
    {"atanh", 1, 1, 0, fn_atanh},
    {"random", 0, 0, 0, fn_random},
    {"div", 2, 2, 0, fn_div},
    {"mod", 2, 2, 0, fn_mod},
    {"bitand", 2, 2, 0, fn_bitand},
    {"bitor", 2, 2, 0, fn_bitor},
    {"bitxor", 2, 2, 0, fn_bitxor},
    {"bitnot", 1, 1, 0, fn_bitnot},
    {"bitsl", 2, 2, 0, fn_bitsl},
    {"bitsr", 2, 2, 0, fn_bitsr},
    {"bitsize", 1, 1, 0, fn_bitsize},
    {"bytesize", 1, 1, 0, fn_bytesize},
    {"subbits", 2, 6, 0, fn_subbits},
    {"str", 1, 1, 0, fn_str},
    {"str_utf8", 1, 1, 0, fn_str_utf8},
    {"str_utf16_le", 1, 1, 0, fn_str_utf16_le},
    {"int", 1, 1, 0, fn_int},
    {"float", 1, 2, 0, fn_float},
    {"float2str", 2, 2, 0, fn_float2str},
    {"bool", 1, 1, 0, fn_bool},
    {"map", 1, 1, 0, fn_map},
    {"bin2hexstr", 1, 2, 0, fn_bin2hexstr},
    {"sqlserver_bin2hexstr", 1, 1, 0, fn_sqlserver_bin2hexstr},
    {"hexstr2bin", 1, 2, 0, fn_hexstr2bin},
    {"is_null", 1, 1, 0, fn_is_null},
    {"is_null_var", 1, 1, 0, fn_is_null_var},
    {"is_not_null", 1, 1, 0, fn_is_not_null},
    {"is_not_null_var", 1, 1, 0, fn_is_not_null_var},
    {"is_str", 1, 1, 0, fn_is_str},
    {"is_bool", 1, 1, 0, fn_is_bool},
    {"is_int", 1, 1, 0, fn_is_int},
    {"is_float", 1, 1, 0, fn_is_float},
    {"is_num", 1, 1, 0, fn_is_num},
    {"is_map", 1, 1, 0, fn_is_map},
    {"is_array", 1, 1, 0, fn_is_array},
    {"is_empty", 1, 1, 0, fn_is_empty},
    {"coalesce", 1, 2, 0, fn_coalesce},
    {"coalesce_ne", 1, 2, 0, fn_coalesce_ne},
    {"null", 0, 0, 0, fn_null},
    {"lower", 1, 1, 0, fn_lower},
    {"upper", 1, 1, 0, fn_upper},
    {"trim", 1, 1, 0, fn_trim},
    {"ltrim", 1, 1, 0, fn_ltrim},
    {"rtrim", 1, 2, 0, fn_rtrim},
    {"reverse", 1, 1, 0, fn_reverse},
    {"strlen", 1, 1, 0, fn_strlen},
    {"substr", 2, 3, 0, fn_substr},
    {"split", 2, 3, 0, fn_split},
    {"tokens", 2, 3, 0, fn_tokens},
    {"concat", 1, 2, 0, fn_concat},
    {"sprintf", 1, V, 0, fn_sprintf},
    {"sprintf_s", 2, 2, 0, fn_sprintf_s},
    {"pad", 2, 4, 0, fn_pad},
    {"replace", 3, 4, 0, fn_replace},
    {"regex_match", 2, 2, 0, fn_regex_match},
    {"regex_replace", 3, 3, 0, fn_regex_replace},
    {"regex_extract", 2, 2, 0, fn_regex_extract},
    {"ascii", 1, 1, 0, fn_ascii},
    {"find", 2, 3, 0, fn_find},
    {"rm_prefix", 2, 2, 0, fn_rm_prefix},
    {"join_to_string", 1, 2, 0, fn_join_to_string},
    {"unescape", 1, 1, 0, fn_unescape},
    {"join_to_sql_values_string", 1, 1, 0, fn_join_to_sql_values_string},
    {"map_new", 0, 0, 0, fn_map_new},
    {"map_get", 2, 3, 0, fn_map_get},
    {"map_put", 3, 3, 0, fn_map_put},
    {"mget", 2, 3, 0, fn_mget},
    {"mput", 3, 3, 0, fn_mput},
    {"map_keys", 1, 1, 0, fn_map_keys},
    {"map_values", 1, 1, 0, fn_map_values},
    {"map_size", 1, 1, 0, fn_map_size},
    {"map_to_entries", 1, 1, 0, fn_map_to_entries},
    {"nth", 2, 2, 0, fn_nth},
    {"length", 1, 1, 0, fn_length},
    {"sublist", 2, 3, 0, fn_sublist},
    {"first", 1, 1, 0, fn_first},
    {"last", 1, 1, 0, fn_last},
    {"contains", 2, 2, 0, fn_contains},
    {"md5", 1, 1, 0, fn_md5},
    {"sha", 1, 1, 0, fn_sha},
    {"sha256", 1, 1, 0, fn_sha256},
    {"hash", 2, 2, 0, fn_hash},
    {"gzip", 1, 1, 0, fn_gzip},
    {"gunzip", 1, 1, 0, fn_gunzip},
    {"zip", 1, 1, 0, fn_zip},
    {"unzip", 1, 1, 0, fn_unzip},
    {"zip_compress", 1, 1, 0, fn_zip_compress},
    {"zip_uncompress", 1, 1, 0, fn_zip_uncompress},
    {"base64_encode", 1, 3, 0, fn_base64_encode},
    {"base64_decode", 1, 3, 0, fn_base64_decode},
    {"json_encode", 1, 1, 0, fn_json_encode},
    {"json_decode", 1, 1, 0, fn_json_decode},
    {"now_timestamp", 0, 1, 0, fn_now_timestamp},
    {"now_rfc3339", 0, 1, 0, fn_now_rfc3339},
    {"unix_ts_to_rfc3339", 1, 2, 0, fn_unix_ts_to_rfc3339},
    {"rfc3339_to_unix_ts", 1, 2, 0, fn_rfc3339_to_unix_ts},
    {"format_date", 3, 4, 0, fn_format_date},
    {"date_to_unix_ts", 3, 4, 0, fn_date_to_unix_ts},
    {"timezone_to_offset_seconds", 1, 1, 0, fn_timezone_to_offset_seconds},
    {"timezone_to_second", 1, 1, 0, fn_timezone_to_offset_seconds},
    {"uuid_v4", 0, 0, 0, fn_uuid_v4},
    {"uuid_v4_no_hyphen", 0, 0, 0, fn_uuid_v4_no_hyphen},
    {"getenv", 1, 1, 0, fn_getenv},
    {"clientid", 0, 0, SF_MESSAGE, fn_clientid},
    {"username", 0, 0, SF_MESSAGE, fn_username},
    {"qos", 0, 0, SF_MESSAGE, fn_qos},
    {"topic", 0, 1, SF_MESSAGE, fn_topic},
    {"msgid", 0, 0, SF_MESSAGE, fn_msgid},
    {"peerhost", 0, 0, SF_MESSAGE, fn_peerhost},
    {"clientip", 0, 0, SF_MESSAGE, fn_peerhost},
    {"payload", 0, 1, SF_MESSAGE, fn_payload},
    {"flags", 0, 0, SF_MESSAGE, fn_flags},
    {"flag", 1, 1, SF_MESSAGE, fn_flag},
};
#undef V

#define NFUNCS (sizeof table / sizeof table[0])

static int by_name(const void *x, const void *y) {
    return strcmp(((const sql_func *)x)->name, ((const sql_func *)y)->name);
}

static pthread_once_t sorted_once = PTHREAD_ONCE_INIT;
static void sort_table(void) {
    qsort(table, NFUNCS, sizeof table[0], by_name);
}
static void ensure_sorted(void) {
    pthread_once(&sorted_once, sort_table);
}

const sql_func *sql_func_lookup(const char *name, size_t len) {
    ensure_sorted();
    size_t lo = 0, hi = NFUNCS;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strncmp(table[mid].name, name, len);
        if (c == 0 && table[mid].name[len] != '\0') c = 1;
        if (c == 0) return &table[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

size_t sql_func_count(void) {
    return NFUNCS;
}
const sql_func *sql_func_at(size_t i) {
    ensure_sorted();
    return i < NFUNCS ? &table[i] : NULL;
}

/* ---- helpers (sql_fn.h) ------------------------------------------------ */

ec_status fn_badarg(sql_eval *ev, const char *fname, const char *want, const value *got) {
    return sql_fn_fail(ev, "bad_sql_function_argument: %s expects %s, got %s", fname, want,
                       vtype_name((vtype)got->type));
}

ec_status fn_oom(sql_eval *ev) {
    return ec_fail(ev->err, EC_ENOMEM, "out of memory evaluating rule");
}

ec_status fn_ret_bin(sql_eval *ev, const char *s, size_t len, value *out) {
    value v = v_bin_copy(ev->a, s, len);
    if (v.type != VT_BIN) return fn_oom(ev);
    *out = v;
    return EC_OK;
}

ec_status fn_ret_buf(sql_eval *ev, const ec_buf *b, value *out) {
    if (!buf_ok(b)) return fn_oom(ev);
    return fn_ret_bin(ev, b->p ? b->p : "", b->len, out);
}

ec_status fn_ret_ab(sql_eval *ev, ec_buf *b, value *out) {
    if (b->oom) return fn_oom(ev);
    *out = v_bin(b->p ? b->p : "", b->len);
    return EC_OK;
}

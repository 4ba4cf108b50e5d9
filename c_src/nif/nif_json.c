/* nif_json.c - json_decode/1 and json_encode/1 NIFs: the C JSON codec and the
 * term conversion, reachable from Erlang (rule_test, tests, properties).
 *
 * Decoding inputs above NIF_JSON_DIRTY_BYTES are rescheduled onto a dirty CPU
 * scheduler with enif_schedule_nif, so a normal scheduler never spends more
 * than ~1 ms here (decoding runs at several hundred MB/s). */
#include <string.h>

#include "../core/json.h"
#include "nif_atoms.h"
#include "nif_priv.h"
#include "nif_term.h"

#define NIF_JSON_DIRTY_BYTES (64 * 1024)

static ERL_NIF_TERM decode_now(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    ErlNifBinary bin;
    if (!enif_inspect_binary(env, argv[0], &bin)) return enif_make_badarg(env);
    arena a;
    arena_init(&a, 4096);
    value v;
    ec_error err;
    ERL_NIF_TERM ret;
    if (json_decode(&a, (const char *)bin.data, bin.size, NULL, &v, &err) == EC_OK)
        ret = enif_make_tuple2(env, ATOM_ok, nif_value_to_term(env, &v));
    else
        ret = nif_error_term(env, &err);
    arena_free(&a);
    return ret;
}

static ERL_NIF_TERM encode_now(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    (void)argc;
    arena a;
    arena_init(&a, 4096);
    value v;
    ec_error err;
    ERL_NIF_TERM ret;
    if (nif_term_to_value(env, argv[0], &a, &v, &err) != EC_OK) {
        ret = nif_error_term(env, &err);
    } else {
        ec_buf b;
        buf_init(&b);
        if (json_encode(&v, &b))
            ret = enif_make_tuple2(env, ATOM_ok, nif_make_binary(env, b.p, b.len));
        else
            ret =
                nif_error_term(env, &(ec_error){.code = EC_ENOMEM,
                                                .msg = "out of memory or too deep encoding JSON"});
        buf_free(&b);
    }
    arena_free(&a);
    return ret;
}

ERL_NIF_TERM nif_json_decode(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    ErlNifBinary bin;
    if (!enif_inspect_binary(env, argv[0], &bin)) return enif_make_badarg(env);
    if (bin.size > NIF_JSON_DIRTY_BYTES)
        return enif_schedule_nif(env, "json_decode_dirty", ERL_NIF_DIRTY_JOB_CPU_BOUND, decode_now,
                                 argc, argv);
    return decode_now(env, argc, argv);
}

/* Registered as a dirty CPU NIF (see nif_main.c): the size of a term is not
 * known before walking it, and encoding is not on the message path. */
ERL_NIF_TERM nif_json_encode(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[]) {
    return encode_now(env, argc, argv);
}

/* nif_term.h - the one place where Erlang terms and values convert.
 *
 * term -> value: binaries are borrowed (no copy; valid while the calling
 * NIF's arguments are), atoms true/false/null/undefined map to their kinds,
 * other atoms become binaries flagged VF_ATOM, maps keep their keys (atom or
 * binary), proper lists become arrays. Integers must fit 64 bits (unsigned
 * values above INT64_MAX become floats, as in the JSON policy).
 * value -> term: binaries are copied into new Erlang binaries; map keys
 * become binaries; undefined/null become the atoms of the same name. */
#ifndef EC_NIF_TERM_H
#define EC_NIF_TERM_H

#include <erl_nif.h>

#include "../core/error.h"
#include "../core/value.h"

ec_status nif_term_to_value(ErlNifEnv *env, ERL_NIF_TERM t, arena *a, value *out, ec_error *err);
ERL_NIF_TERM nif_value_to_term(ErlNifEnv *env, const value *v);

/* {error, #{reason => Atom, message => Binary[, position, line, column]}} */
ERL_NIF_TERM nif_error_term(ErlNifEnv *env, const ec_error *err);
/* A new binary holding s[0..len). */
ERL_NIF_TERM nif_make_binary(ErlNifEnv *env, const void *s, size_t len);

#endif

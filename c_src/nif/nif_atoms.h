/* nif_atoms.h - every atom the NIF returns, created once in load/upgrade. */
#ifndef EC_NIF_ATOMS_H
#define EC_NIF_ATOMS_H

#include <erl_nif.h>

#define EC_ATOM_LIST(X)                                                                            \
    X(ok)                                                                                          \
    X(error)                                                                                       \
    X(undefined)                                                                                   \
    X(null)                                                                                        \
    X(true)                                                                                        \
    X(false)                                                                                       \
    X(ec_delivery)                                                                                 \
    X(closed)                                                                                      \
    X(enomem)                                                                                      \
    X(parse)                                                                                       \
    X(limit)                                                                                       \
    X(invalid)                                                                                     \
    X(type)                                                                                        \
    X(kafka)                                                                                       \
    X(state)                                                                                       \
    X(message)                                                                                     \
    X(position)                                                                                    \
    X(line)                                                                                        \
    X(column)                                                                                      \
    X(reason)                                                                                      \
    X(version)                                                                                     \
    X(loads)                                                                                       \
    X(upgrades)                                                                                    \
    X(unloads)                                                                                     \
    X(live_producers)                                                                              \
    X(live_resources)                                                                              \
    X(no_result)                                                                                   \
    X(ec_action_reply)                                                                             \
    X(payload)                                                                                     \
    X(username)                                                                                    \
    X(peerhost)                                                                                    \
    X(peername)                                                                                    \
    X(client_attrs)                                                                                \
    X(properties)                                                                                  \
    X(expired)

#define EC_ATOM_DECL(name) extern ERL_NIF_TERM ATOM_##name;
EC_ATOM_LIST(EC_ATOM_DECL)
#undef EC_ATOM_DECL

/* Creates every atom (idempotent; called from load and upgrade). */
void nif_atoms_init(ErlNifEnv *env);

#endif

/* tmpl_tester.h - the template half of the rule tester (design.md §3.2):
 * {"template": T, "data": D, "mode": M, "encode_mode": X, "ext_headers": [[K, V], ...]}
 * rendered as the Kafka producer would. */
#ifndef EC_TMPL_TESTER_H
#define EC_TMPL_TESTER_H

#include "../core/arena.h"
#include "../core/buf.h"
#include "../core/value.h"

void tmpl_tester_request(const value *req, arena *a, ec_buf *out);

#endif

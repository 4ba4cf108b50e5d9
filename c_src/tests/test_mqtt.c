/* test_mqtt.c - the MQTT source's configuration parsing (EMQX's MQTT
 * connector + source shape): server forms, defaults, and errors that name
 * the field. */
#include <stdlib.h>

#include "../core/json.h"
#include "../mqtt/msrc.h"
#include "test.h"

static ec_status parse(const char *conn_json, const char *params_json, arena *a, msrc_conf *c,
                       ec_error *err) {
    value conn, params;
    if (json_decode(a, conn_json, strlen(conn_json), NULL, &conn, err) != EC_OK ||
        json_decode(a, params_json, strlen(params_json), NULL, &params, err) != EC_OK)
        return EC_EPARSE;
    return msrc_conf_parse(&conn, &params, a, c, err);
}

TEST(mqtt_conf_defaults_and_forms) {
    arena a;
    arena_init(&a, 4096);
    msrc_conf c;
    ec_error err;
    REQUIRE(parse("{\"server\": \" broker.example.com\"}", "{\"topic\": \"t/#\"}", &a, &c, &err) ==
            EC_OK);
    CHECK_STR(c.host, "broker.example.com");
    CHECK_INT(c.port, 1883);
    CHECK_INT(c.proto, 4);
    CHECK_INT(c.qos, 1);
    CHECK_INT(c.keepalive_s, 160);
    CHECK(!c.clean_start);
    CHECK_INT(c.session_expiry_s, 7200);
    CHECK(!c.tls);
    CHECK_INT(c.ntopics, 1);
    CHECK_STR(c.topics[0], "t/#");
    REQUIRE(parse("{\"server\": \"[::1]:8883\", \"proto_ver\": \"v5\", \"keepalive\": \"30s\","
                  " \"clean_start\": true, \"username\": \"u\", \"password\": \"p\","
                  " \"ssl\": {\"enable\": true, \"verify\": \"verify_peer\"}}",
                  "{\"topics\": [\"$share/g/a/+\", \"b\"], \"qos\": 0}", &a, &c, &err) == EC_OK);
    CHECK_STR(c.host, "::1");
    CHECK_INT(c.port, 8883);
    CHECK_INT(c.proto, 5);
    CHECK_INT(c.keepalive_s, 30);
    CHECK(c.clean_start);
    CHECK_STR(c.username, "u");
    CHECK(c.tls && c.tls_verify);
    CHECK_STR(c.cafile, "/etc/ssl/certs/ca-certificates.crt");
    CHECK_INT(c.ntopics, 2);
    CHECK_STR(c.topics[0], "$share/g/a/+");
    CHECK_INT(c.qos, 0);
    arena_free(&a);
}

TEST(mqtt_conf_errors_name_the_field) {
    struct {
        const char *conn, *params, *prefix;
    } cases[] = {
        {"{}", "{\"topic\": \"t\"}", "server:"},
        {"{\"server\": \"h:0\"}", "{\"topic\": \"t\"}", "server:"},
        {"{\"server\": \"h:70000\"}", "{\"topic\": \"t\"}", "server:"},
        {"{\"server\": \"[::1\"}", "{\"topic\": \"t\"}", "server:"},
        {"{\"server\": \"h\", \"proto_ver\": \"v6\"}", "{\"topic\": \"t\"}", "proto_ver:"},
        {"{\"server\": \"h\", \"keepalive\": \"soon\"}", "{\"topic\": \"t\"}", "keepalive:"},
        {"{\"server\": \"h\", \"clean_start\": 1}", "{\"topic\": \"t\"}", "clean_start:"},
        {"{\"server\": \"h\", \"ssl\": {\"verify\": \"maybe\"}}", "{\"topic\": \"t\"}",
         "ssl.verify:"},
        {"{\"server\": \"h\", \"ssl\": {\"server_name_indication\": \"x.example\"}}",
         "{\"topic\": \"t\"}", "ssl.server_name_indication:"},
        {"{\"server\": \"h\"}", "{}", "parameters.topic:"},
        {"{\"server\": \"h\"}", "{\"topic\": \"a/#/b\"}", "parameters.topic:"},
        {"{\"server\": \"h\"}", "{\"topics\": []}", "parameters.topics:"},
        {"{\"server\": \"h\"}", "{\"topics\": [\"ok\", \"x+\"]}", "parameters.topics:"},
        {"{\"server\": \"h\"}", "{\"topic\": \"t\", \"qos\": 3}", "parameters.qos:"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        arena a;
        arena_init(&a, 4096);
        msrc_conf c;
        ec_error err;
        CHECK(parse(cases[i].conn, cases[i].params, &a, &c, &err) == EC_EINVAL);
        if (strncmp(err.msg, cases[i].prefix, strlen(cases[i].prefix)) != 0) {
            char m[400];
            snprintf(m, sizeof m, "case %zu: \"%s\" does not start with %s", i, err.msg,
                     cases[i].prefix);
            test_failed(__FILE__, __LINE__, m);
        }
        arena_free(&a);
    }
}

%% @doc End to end in standalone mode: real MQTT clients (mosquitto_pub,
%% MQTT 5) -> mosquitto -> the plugin's MQTT source -> rules -> the Kafka
%% sink over SASL_SSL -> the real broker -> a consumer (kcat). Checks key,
%% value, headers from MQTT 5 user properties, partition and per-key order,
%% shared subscriptions, and QoS 1 at-least-once across a restart of the node.
-module(emqx_confluent_e2e_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-compile([export_all, nowarn_export_all]).

-import(ec_api, [call/2, call/3]).

all() -> [t_mqtt5_to_kafka, t_shared_subscription, t_qos1_across_restart, t_source_errors,
          t_source_auth_and_tls, t_source_reconnects].

init_per_suite(Config) ->
    Data = filename:join(?config(priv_dir, Config), "data"),
    ok = ec_api:start_app(Data),
    [{data, Data} | Config].

end_per_suite(_) ->
    _ = application:stop(emqx_confluent),
    ok.

init_per_testcase(_, Config) ->
    ok = ec_api:delete_all(),
    Config.

end_per_testcase(_, _) -> ok.

mqtt_port() -> binary_to_list(maps:get(<<"MQTT_PORT">>, ec_test_util:mqtt())).

%% publishes Lines (one message each, in order, one connection) to Topic
pub(Topic, Lines, Extra) ->
    File = filename:join("/tmp", "ec-e2e-" ++ integer_to_list(erlang:unique_integer([positive]))),
    ok = file:write_file(File, [[L, "\n"] || L <- Lines]),
    Cmd = lists:flatten(["mosquitto_pub -h 127.0.0.1 -p ", mqtt_port(), " -V 5 -q 1 -t '", Topic, "' -l ",
                         Extra, " < ", File, " 2>&1; echo rc=$?"]),
    Out = os:cmd(Cmd),
    ok = file:delete(File),
    ?assertMatch({match, _}, re:run(Out, "rc=0"), Out).

%% the Kafka side: connector (Confluent style), action, rule
setup_sink(Topic, Sql) ->
    ok = ec_test_util:create_topic(Topic, 3),
    {201, _} = call(post, "/connectors", ec_api:conn_body(confluent, <<"cc">>)),
    {201, #{<<"status">> := <<"connected">>}} =
        call(post, "/actions", #{<<"type">> => <<"confluent_producer">>, <<"name">> => <<"k">>, <<"connector">> => <<"cc">>,
                                 <<"parameters">> => #{<<"topic">> => Topic,
                                                       <<"message">> => #{<<"key">> => <<"${vin}">>, <<"value">> => <<"${.}">>},
                                                       <<"partition_strategy">> => <<"key_dispatch">>,
                                                       <<"kafka_headers">> => <<"${up}">>}}),
    {201, _} = call(post, "/rules", #{<<"id">> => <<"fleet">>, <<"sql">> => Sql,
                                      <<"actions">> => [<<"confluent_producer:k">>]}),
    ok.

setup_source(Name, Filter, ConnExtra) ->
    {201, _} = call(post, "/connectors", maps:merge(#{<<"type">> => <<"mqtt">>, <<"name">> => <<"m_", Name/binary>>,
                                                      <<"server">> => list_to_binary("127.0.0.1:" ++ mqtt_port()),
                                                      <<"proto_ver">> => <<"v5">>}, ConnExtra)),
    {201, S} = call(post, "/sources", #{<<"type">> => <<"mqtt">>, <<"name">> => Name, <<"connector">> => <<"m_", Name/binary>>,
                                        <<"parameters">> => #{<<"topic">> => Filter, <<"qos">> => 1}}),
    ?assertMatch(#{<<"status">> := <<"connected">>}, S),
    S.

sql() ->
    <<"SELECT payload.vin as vin, payload.seq as seq, payload.speed as speed, "
      "pub_props.'User-Property' as up, topic FROM \"vehicles/#\" WHERE payload.speed >= 0">>.

decode(R) ->
    {ok, V} = emqx_confluent_nif:json_decode(maps:get(<<"payload">>, R)),
    V.

t_mqtt5_to_kafka(_) ->
    Topic = ec_test_util:unique_topic(<<"e2e">>),
    ok = setup_sink(Topic, sql()),
    setup_source(<<"s1">>, <<"vehicles/#">>, #{}),
    Vins = [<<"VIN-A">>, <<"VIN-B">>, <<"VIN-C">>, <<"VIN-D">>],
    N = 25,
    [pub("vehicles/" ++ binary_to_list(V),
         [io_lib:format("{\"vin\":\"~s\",\"seq\":~b,\"speed\":~b}", [V, S, S * 3]) || S <- lists:seq(1, N)],
         "-D publish user-property fleet north -D publish user-property vin " ++ binary_to_list(V))
     || V <- Vins],
    %% one filtered out by WHERE, one on a topic no rule reads
    pub("vehicles/VIN-A", [<<"{\"vin\":\"VIN-A\",\"seq\":0,\"speed\":-1}">>], ""),
    pub("other/x", [<<"{\"vin\":\"X\",\"seq\":0,\"speed\":1}">>], ""),
    Recs = ec_test_util:consume(Topic, N * length(Vins)),
    ?assertEqual(N * length(Vins), length(Recs)),
    [begin
         Mine = [R || R <- Recs, maps:get(<<"key">>, R) =:= V],
         ?assertEqual(N, length(Mine)),
         %% one partition per key, and the MQTT order kept
         ?assertMatch([_], lists:usort([maps:get(<<"partition">>, R) || R <- Mine])),
         Seqs = [maps:get(<<"seq">>, decode(R)) || R <- lists:sort(fun(A, B) -> maps:get(<<"offset">>, A) =< maps:get(<<"offset">>, B) end, Mine)],
         ?assertEqual(lists:seq(1, N), Seqs),
         [R1 | _] = Mine,
         ?assertEqual([<<"fleet">>, <<"north">>, <<"vin">>, V], maps:get(<<"headers">>, R1)),
         ?assertMatch(#{<<"vin">> := V, <<"topic">> := <<"vehicles/", V/binary>>,
                        <<"up">> := #{<<"fleet">> := <<"north">>, <<"vin">> := V}}, decode(R1))
     end || V <- Vins],
    %% each key where EMQX's key_dispatch puts it: phash2(Key) mod 3
    [?assertEqual(erlang:phash2(maps:get(<<"key">>, R)) rem 3, maps:get(<<"partition">>, R)) || R <- Recs],
    {200, #{<<"metrics">> := #{<<"received">> := Received}}} = call(get, "/sources/mqtt:s1/metrics"),
    ?assertEqual(N * length(Vins) + 1, Received),
    ec_test_util:wait_until(fun() ->
                                    {200, #{<<"metrics">> := #{<<"success">> := S}}} = call(get, "/actions/confluent_producer:k/metrics"),
                                    S =:= N * length(Vins)
                            end, 10000),
    ?assertMatch({200, #{<<"metrics">> := #{<<"matched">> := 101, <<"passed">> := 100}}}, call(get, "/rules/fleet/metrics")),
    ?assertMatch({200, #{<<"status">> := <<"connected">>, <<"sources">> := [<<"s1">>]}}, call(get, "/connectors/mqtt:m_s1")).

%% two sources in one shared-subscription group: each message reaches Kafka once
t_shared_subscription(_) ->
    Topic = ec_test_util:unique_topic(<<"e2e-share">>),
    ok = setup_sink(Topic, sql()),
    setup_source(<<"g1">>, <<"$share/grp/vehicles/#">>, #{}),
    setup_source(<<"g2">>, <<"$share/grp/vehicles/#">>, #{}),
    N = 40,
    pub("vehicles/VIN-S", [io_lib:format("{\"vin\":\"VIN-S\",\"seq\":~b,\"speed\":1}", [S]) || S <- lists:seq(1, N)], ""),
    Recs = ec_test_util:consume(Topic, N),
    timer:sleep(1000),
    ?assertEqual(N, length(ec_test_util:consume(Topic, N))),
    ?assertEqual(lists:seq(1, N), lists:sort([maps:get(<<"seq">>, decode(R)) || R <- Recs])),
    {200, #{<<"metrics">> := #{<<"received">> := R1}}} = call(get, "/sources/mqtt:g1/metrics"),
    {200, #{<<"metrics">> := #{<<"received">> := R2}}} = call(get, "/sources/mqtt:g2/metrics"),
    ?assertEqual(N, R1 + R2).

%% QoS 1 messages published while the node is down wait in the broker's
%% session and reach Kafka after the restart
t_qos1_across_restart(Config) ->
    Topic = ec_test_util:unique_topic(<<"e2e-restart">>),
    ok = setup_sink(Topic, sql()),
    setup_source(<<"r1">>, <<"vehicles/#">>, #{<<"session_expiry_interval">> => <<"10m">>}),
    pub("vehicles/VIN-R", [<<"{\"vin\":\"VIN-R\",\"seq\":1,\"speed\":1}">>], ""),
    ec_test_util:consume(Topic, 1),
    ok = ec_api:stop_app(),
    N = 30,
    pub("vehicles/VIN-R", [io_lib:format("{\"vin\":\"VIN-R\",\"seq\":~b,\"speed\":1}", [S]) || S <- lists:seq(2, N + 1)], ""),
    ok = ec_api:start_app(?config(data, Config)),
    Recs = ec_test_util:consume(Topic, N + 1, 30000),
    Seqs = [maps:get(<<"seq">>, decode(R)) || R <- Recs],
    %% at least once: every one arrived (duplicates would only come from a crash)
    ?assertEqual(lists:seq(1, N + 1), lists:usort(Seqs)).

t_source_errors(_) ->
    Bad = fun(Path, B) -> {400, #{<<"code">> := <<"BAD_REQUEST">>, <<"message">> := M}} = call(post, Path, B), M end,
    ?assertMatch(<<"server:", _/binary>>, Bad("/connectors", #{<<"type">> => <<"mqtt">>, <<"name">> => <<"m">>})),
    ?assertMatch(<<"proto_ver:", _/binary>>, Bad("/connectors", #{<<"type">> => <<"mqtt">>, <<"name">> => <<"m">>,
                                                                  <<"server">> => <<"h:1883">>, <<"proto_ver">> => <<"v9">>})),
    ?assertMatch(<<"server:", _/binary>>, Bad("/connectors", #{<<"type">> => <<"mqtt">>, <<"name">> => <<"m">>,
                                                               <<"server">> => <<"h:99999">>})),
    ?assertMatch(<<"connect_timeout:", _/binary>>, Bad("/connectors", #{<<"type">> => <<"mqtt">>, <<"name">> => <<"m">>,
                                                                        <<"server">> => <<"h">>,
                                                                        <<"connect_timeout">> => <<"soon">>})),
    {201, C} = call(post, "/connectors", #{<<"type">> => <<"mqtt">>, <<"name">> => <<"m">>,
                                           <<"server">> => <<"127.0.0.1:1">>, <<"password">> => <<"pw">>}),
    ?assertMatch(#{<<"password">> := <<"******">>, <<"proto_ver">> := <<"v4">>,
                   <<"connect_timeout">> := <<"15s">>}, C),
    ?assertMatch(<<"parameters.topic:", _/binary>>,
                 Bad("/sources", #{<<"type">> => <<"mqtt">>, <<"name">> => <<"s">>, <<"connector">> => <<"m">>,
                                   <<"parameters">> => #{<<"topic">> => <<"a/#/b">>}})),
    ?assertMatch(<<"parameters.qos:", _/binary>>,
                 Bad("/sources", #{<<"type">> => <<"mqtt">>, <<"name">> => <<"s">>, <<"connector">> => <<"m">>,
                                   <<"parameters">> => #{<<"topic">> => <<"a/#">>, <<"qos">> => 3}})),
    ?assertMatch(<<"connector: no mqtt connector named nope">>,
                 Bad("/sources", #{<<"type">> => <<"mqtt">>, <<"name">> => <<"s">>, <<"connector">> => <<"nope">>,
                                   <<"parameters">> => #{<<"topic">> => <<"a/#">>}})),
    %% an unreachable broker: created, disconnected with the reason; the connector cannot be deleted under it
    {201, S} = call(post, "/sources", #{<<"type">> => <<"mqtt">>, <<"name">> => <<"s">>, <<"connector">> => <<"m">>,
                                        <<"parameters">> => #{<<"topic">> => <<"a/#">>}}),
    ?assertMatch(#{<<"status">> := <<"disconnected">>, <<"status_reason">> := <<_, _/binary>>}, S),
    ?assertMatch({400, _}, call(delete, "/connectors/mqtt:m")),
    ?assertMatch({204, _}, call(put, "/sources/mqtt:s/enable/false")),
    ?assertMatch({200, #{<<"status">> := <<"stopped">>}}, call(get, "/sources/mqtt:s")),
    ?assertMatch({404, _}, call(get, "/sources/mqtt:nope")),
    ?assertMatch({404, #{<<"message">> := <<"Invalid source ID, unknown resource type: kafka_producer">>}},
                 call(get, "/sources/kafka_producer:x")).

mqtt(K) -> binary_to_list(maps:get(K, ec_test_util:mqtt())).

source_status(Id) ->
    {200, S} = call(get, "/sources/" ++ Id),
    S.

%% username/password and TLS (verify_peer against the test CA) to the broker
t_source_auth_and_tls(_) ->
    Topic = ec_test_util:unique_topic(<<"e2e-tls">>),
    ok = setup_sink(Topic, sql()),
    User = list_to_binary(mqtt(<<"MQTT_USER">>)),
    Pw = list_to_binary(mqtt(<<"MQTT_PASSWORD">>)),
    Auth = list_to_binary("127.0.0.1:" ++ mqtt(<<"MQTT_AUTH_PORT">>)),
    Tls = list_to_binary("127.0.0.1:" ++ mqtt(<<"MQTT_TLS_PORT">>)),
    Ca = list_to_binary(mqtt(<<"MQTT_CA">>)),
    setup_source(<<"auth">>, <<"vehicles/#">>, #{<<"server">> => Auth, <<"username">> => User, <<"password">> => Pw}),
    setup_source(<<"tls">>, <<"vehicles/#">>,
                 #{<<"server">> => Tls, <<"username">> => User, <<"password">> => Pw,
                   <<"ssl">> => #{<<"enable">> => true, <<"verify">> => <<"verify_peer">>, <<"cacertfile">> => Ca}}),
    pub("vehicles/VIN-T", [<<"{\"vin\":\"VIN-T\",\"seq\":1,\"speed\":1}">>], ""),
    %% one message, two sources: two records
    ?assertEqual(2, length(ec_test_util:consume(Topic, 2))),
    ?assertMatch({200, #{<<"metrics">> := #{<<"received">> := 1}}}, call(get, "/sources/mqtt:tls/metrics")),
    %% a wrong password: refused by the broker, with the reason
    {201, _} = call(post, "/connectors", #{<<"type">> => <<"mqtt">>, <<"name">> => <<"m_badpw">>, <<"server">> => Auth,
                                           <<"username">> => User, <<"password">> => <<"wrong">>}),
    {201, _} = call(post, "/sources", #{<<"type">> => <<"mqtt">>, <<"name">> => <<"badpw">>, <<"connector">> => <<"m_badpw">>,
                                        <<"parameters">> => #{<<"topic">> => <<"x/#">>}}),
    ec_test_util:wait_until(fun() -> maps:get(<<"status_reason">>, source_status("mqtt:badpw"), <<>>) =/= <<>> end, 10000),
    #{<<"status">> := St1, <<"status_reason">> := R1} = source_status("mqtt:badpw"),
    ?assertNotEqual(<<"connected">>, St1),
    ?assertMatch({match, _}, re:run(R1, "refused|not authori[sz]ed", [caseless]), R1),
    %% TLS verified against the system bundle: the test CA is not in it
    {201, _} = call(post, "/connectors", #{<<"type">> => <<"mqtt">>, <<"name">> => <<"m_badca">>, <<"server">> => Tls,
                                           <<"username">> => User, <<"password">> => Pw,
                                           <<"ssl">> => #{<<"enable">> => true, <<"verify">> => <<"verify_peer">>}}),
    {201, _} = call(post, "/sources", #{<<"type">> => <<"mqtt">>, <<"name">> => <<"badca">>, <<"connector">> => <<"m_badca">>,
                                        <<"parameters">> => #{<<"topic">> => <<"x/#">>}}),
    ec_test_util:wait_until(fun() -> maps:get(<<"status_reason">>, source_status("mqtt:badca"), <<>>) =/= <<>> end, 10000),
    ?assertNotEqual(<<"connected">>, maps:get(<<"status">>, source_status("mqtt:badca"))).

%% the broker goes away and comes back: the source reconnects and resubscribes
t_source_reconnects(_) ->
    Topic = ec_test_util:unique_topic(<<"e2e-reconnect">>),
    ok = setup_sink(Topic, sql()),
    setup_source(<<"rc">>, <<"vehicles/#">>, #{<<"clean_start">> => true}),
    Dir = filename:join([ec_test_util:root(), "_build", "test", "services", "mqtt"]),
    {0, _} = ec_test_util:script("mqtt.sh", ["stop", Dir]),
    ec_test_util:wait_until(fun() -> maps:get(<<"status">>, source_status("mqtt:rc")) =/= <<"connected">> end, 10000),
    {0, _} = ec_test_util:script("mqtt.sh", ["start", Dir]),
    ec_test_util:wait_until(fun() -> maps:get(<<"status">>, source_status("mqtt:rc")) =:= <<"connected">> end, 40000),
    timer:sleep(500), %% the SUBSCRIBE follows the CONNACK
    pub("vehicles/VIN-RC", [<<"{\"vin\":\"VIN-RC\",\"seq\":1,\"speed\":1}">>], ""),
    [R] = ec_test_util:consume(Topic, 1),
    ?assertEqual(<<"VIN-RC">>, maps:get(<<"key">>, R)).

%% @doc The REST API over real HTTP (httpc) against the real broker:
%% authentication on every endpoint, connector/action/rule CRUD with EMQX's
%% shapes and status codes, validation errors with field paths, secrets
%% masked and kept, dependants blocking deletes, probes, metrics over REST
%% equal to what a consumer reads, Prometheus text, rule_test equal to the
%% CLI, and a restart that restores the configuration and resumes producing.
-module(emqx_confluent_api_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").
-include("emqx_message.hrl").

-compile([export_all, nowarn_export_all]).

-import(ec_api, [call/2, call/3, call/4]).

all() ->
    [t_auth_every_endpoint, t_connector_crud, t_connector_errors, t_action_rule_flow_and_metrics,
     t_validation_errors, t_dependants, t_probes, t_rule_test_matches_cli, t_rules_listing,
     t_restart_restores_and_resumes, t_hooks_registered_with_emqx, t_sync_action_on_hook,
     t_event_rules_with_emqx, t_disk_buffer_over_rest].

init_per_suite(Config) ->
    ok = ec_api:start_app(filename:join(?config(priv_dir, Config), "data")),
    Config.

end_per_suite(_Config) ->
    _ = application:stop(emqx_confluent),
    ok.

%% every case starts from an empty configuration
init_per_testcase(_, Config) ->
    ok = ec_api:delete_all(),
    Config.

end_per_testcase(_, _) -> ok.

%% ---- auth ---------------------------------------------------------------------

endpoints() ->
    [{get, "/status"}, {get, "/connectors"}, {post, "/connectors"}, {get, "/connectors/kafka_producer:x"},
     {put, "/connectors/kafka_producer:x"}, {delete, "/connectors/kafka_producer:x"},
     {put, "/connectors/kafka_producer:x/enable/false"}, {post, "/connectors/kafka_producer:x/start"},
     {post, "/nodes/n@h/connectors/kafka_producer:x/start"}, {post, "/connectors_probe"},
     {get, "/actions"}, {post, "/actions"}, {get, "/actions/kafka_producer:x"},
     {put, "/actions/kafka_producer:x"}, {delete, "/actions/kafka_producer:x"},
     {put, "/actions/kafka_producer:x/enable/true"}, {post, "/actions/kafka_producer:x/start"},
     {get, "/actions/kafka_producer:x/metrics"}, {put, "/actions/kafka_producer:x/metrics/reset"},
     {post, "/actions_probe"}, {get, "/actions_summary"}, {get, "/action_types"},
     {get, "/rules"}, {post, "/rules"}, {get, "/rules/r"}, {put, "/rules/r"}, {delete, "/rules/r"},
     {get, "/rules/r/metrics"}, {put, "/rules/r/metrics/reset"}, {post, "/rule_test"},
     {get, "/prometheus/stats"}, {get, "/no/such/path"}].

body_for(get) -> none;
body_for(delete) -> none;
body_for(_) -> <<"{}">>.

t_auth_every_endpoint(_) ->
    [begin
         {S1, B1} = call(M, P, body_for(M), none),
         ?assertEqual({401, <<"AUTHORIZATION_HEADER_ERROR">>}, {S1, maps:get(<<"code">>, B1)}, {M, P}),
         {S2, B2} = call(M, P, body_for(M), {"admin", "wrong"}),
         ?assertEqual({401, <<"BAD_API_KEY_OR_SECRET">>}, {S2, maps:get(<<"code">>, B2)}, {M, P}),
         {S3, _} = call(M, P, body_for(M), {"nobody", "admin-secret"}),
         ?assertEqual(401, S3, {M, P}),
         {S4, _} = call(M, P, body_for(M), "Digest abc"),
         ?assertEqual(401, S4, {M, P}),
         %% a viewer reads but does not change
         {S5, B5} = call(M, P, body_for(M), ec_api:viewer()),
         case M of
             get -> ?assertNotEqual(403, S5, {M, P});
             _ -> ?assertEqual({403, <<"UNAUTHORIZED_ROLE">>}, {S5, maps:get(<<"code">>, B5)}, {M, P})
         end
     end || {M, P} <- endpoints()],
    ?assertMatch({200, #{<<"status">> := <<"running">>}}, call(get, "/status")).

%% ---- connectors -----------------------------------------------------------------

t_connector_crud(_) ->
    Body = ec_api:conn_body(confluent, <<"my_confluent">>),
    Secret = ec_test_util:kafka(<<"KAFKA_SASL_SECRET">>),
    {201, C} = call(post, "/connectors", Body),
    ?assertMatch(#{<<"type">> := <<"confluent_producer">>, <<"name">> := <<"my_confluent">>,
                   <<"status">> := <<"connected">>, <<"actions">> := [], <<"sources">> := [],
                   <<"authentication">> := #{<<"password">> := <<"******">>, <<"mechanism">> := <<"plain">>},
                   <<"ssl">> := #{<<"enable">> := true}, <<"connect_timeout">> := <<"5s">>,
                   <<"min_metadata_refresh_interval">> := <<"3s">>,
                   <<"socket_opts">> := #{<<"sndbuf">> := <<"1MB">>, <<"nodelay">> := true},
                   <<"node_status">> := [#{<<"status">> := <<"connected">>}]}, C),
    ?assertNot(maps:is_key(<<"status_reason">>, C)),
    Id = "/connectors/confluent_producer:my_confluent",
    ?assertMatch({200, [#{<<"name">> := <<"my_confluent">>}]}, call(get, "/connectors")),
    ?assertEqual({200, C}, call(get, Id)),
    %% the secret is in no response and is kept when sent back masked
    {200, All} = call(get, "/connectors"),
    ?assertEqual(nomatch, binary:match(element(2, emqx_confluent_nif:json_encode(All)), Secret)),
    {200, C2} = call(put, Id, C#{<<"description">> => <<"edited">>}),
    ?assertMatch(#{<<"description">> := <<"edited">>, <<"status">> := <<"connected">>,
                   <<"authentication">> := #{<<"password">> := <<"******">>}}, C2),
    {ok, Stored} = emqx_confluent_config:find(connector, <<"confluent_producer:my_confluent">>, emqx_confluent_mgr:snapshot()),
    ?assertEqual(Secret, maps:get(<<"password">>, maps:get(<<"authentication">>, Stored))),
    %% %3A works as well as ':'
    ?assertMatch({200, #{<<"name">> := <<"my_confluent">>}}, call(get, "/connectors/confluent_producer%3Amy_confluent")),
    %% a wrong secret: disconnected with the reason, on this node
    {200, Bad} = call(put, Id, C#{<<"authentication">> => #{<<"username">> => ec_test_util:kafka(<<"KAFKA_SASL_KEY">>),
                                                             <<"password">> => <<"wrong">>}}),
    ?assertMatch(#{<<"status">> := <<"disconnected">>, <<"status_reason">> := _}, Bad),
    {200, _} = call(put, Id, Body#{<<"description">> => <<"fixed">>}),
    ec_api:wait_status(Id, <<"connected">>, 20000),
    %% disable: stopped; enable: connected again; start
    ?assertMatch({204, _}, call(put, Id ++ "/enable/false")),
    ?assertMatch(#{<<"status">> := <<"stopped">>, <<"enable">> := false}, element(2, call(get, Id))),
    ?assertMatch({400, #{<<"message">> := <<"Forbidden operation, connector not enabled">>}}, call(post, Id ++ "/start")),
    ?assertMatch({204, _}, call(put, Id ++ "/enable/true")),
    ec_api:wait_status(Id, <<"connected">>, 20000),
    ?assertMatch({204, _}, call(post, Id ++ "/start")),
    ?assertMatch({204, _}, call(post, "/nodes/" ++ atom_to_list(node()) ++ Id ++ "/start")),
    ?assertMatch({404, #{<<"message">> := <<"Node not found: nobody@nowhere">>}},
                 call(post, "/nodes/nobody@nowhere" ++ Id ++ "/start")),
    ?assertMatch({400, #{<<"message">> := <<"enable: expected true or false">>}}, call(put, Id ++ "/enable/maybe")),
    %% create twice
    ?assertMatch({400, #{<<"code">> := <<"ALREADY_EXISTS">>, <<"message">> := <<"connector already exists">>}},
                 call(post, "/connectors", Body)),
    ?assertMatch({204, _}, call(delete, Id)),
    ?assertMatch({404, #{<<"message">> := <<"Connector lookup failed: connector named 'my_confluent' of type "
                                            "confluent_producer does not exist.">>}}, call(get, Id)),
    ?assertEqual({200, []}, call(get, "/connectors")).

t_connector_errors(_) ->
    Body = ec_api:conn_body(plain, <<"c1">>),
    ?assertMatch({404, #{<<"code">> := <<"NOT_FOUND">>,
                         <<"message">> := <<"Invalid connector ID, should be of pattern {type}:{name}, but got: nocolon">>}},
                 call(get, "/connectors/nocolon")),
    ?assertMatch({404, #{<<"message">> := <<"Invalid connector ID, unknown resource type: http">>}},
                 call(get, "/connectors/http:x")),
    Bad = fun(B) -> {400, #{<<"code">> := <<"BAD_REQUEST">>, <<"message">> := M}} = call(post, "/connectors", B), M end,
    ?assertMatch(<<"name: Invalid name format", _/binary>>, Bad(Body#{<<"name">> => <<"-x">>})),
    ?assertMatch(<<"type: required">>, Bad(maps:remove(<<"type">>, Body))),
    ?assertMatch(<<"type: expected", _/binary>>, Bad(Body#{<<"type">> => <<"http">>})),
    ?assertMatch(<<"connect_timeout:", _/binary>>, Bad(Body#{<<"connect_timeout">> => <<"5 parsecs">>})),
    ?assertMatch(<<"socket_opts.sndbuf:", _/binary>>, Bad(Body#{<<"socket_opts">> => #{<<"sndbuf">> => <<"1Mb">>}})),
    ?assertMatch(<<"bootstrap_hosts:", _/binary>>, Bad(maps:remove(<<"bootstrap_hosts">>, Body))),
    ?assertMatch(<<"invalid JSON", _/binary>>, Bad(<<"{\"type\": ">>)),
    ?assertMatch(<<"the request body must be a JSON object">>, Bad(<<"[1,2]">>)),
    %% nothing of the refused requests was kept
    ?assertEqual({200, []}, call(get, "/connectors")),
    %% unreachable: created, disconnected with a reason
    {201, C} = call(post, "/connectors", Body#{<<"bootstrap_hosts">> => <<"127.0.0.1:1">>,
                                               <<"metadata_request_timeout">> => <<"300ms">>,
                                               <<"resource_opts">> => #{<<"start_timeout">> => <<"5s">>}}),
    ?assertMatch(#{<<"status">> := <<"disconnected">>, <<"status_reason">> := _}, C).

%% ---- actions, rules, the publish path and metrics --------------------------------

msg(Topic, Payload) ->
    #message{id = crypto:strong_rand_bytes(16), qos = 1, from = <<"dev-1">>,
             flags = #{dup => false, retain => false},
             headers = #{username => <<"u1">>, peerhost => {127, 0, 0, 1}, peername => {{127, 0, 0, 1}, 5000},
                         properties => #{'User-Property' => [{<<"site">>, <<"berlin">>}]}},
             topic = Topic, payload = Payload, timestamp = erlang:system_time(millisecond)}.

setup_flow(Topic) ->
    ok = ec_test_util:create_topic(Topic, 3),
    {201, _} = call(post, "/connectors", ec_api:conn_body(confluent, <<"conf1">>)),
    {201, A} = call(post, "/actions",
                    #{<<"type">> => <<"confluent_producer">>, <<"name">> => <<"to_kafka">>, <<"connector">> => <<"conf1">>,
                      <<"parameters">> => #{<<"topic">> => Topic,
                                            <<"message">> => #{<<"key">> => <<"${.clientid}">>, <<"value">> => <<"${.}">>},
                                            <<"partition_strategy">> => <<"key_dispatch">>,
                                            <<"kafka_headers">> => <<"${.up}">>}}),
    {201, R} = call(post, "/rules", #{<<"id">> => <<"rule_kafka">>,
                                      <<"sql">> => <<"SELECT payload.temp as temp, clientid, pub_props.'User-Property' as up "
                                                     "FROM \"sensors/#\" WHERE payload.temp > 0">>,
                                      <<"actions">> => [<<"confluent_producer:to_kafka">>]}),
    {A, R}.

t_action_rule_flow_and_metrics(_) ->
    Topic = ec_test_util:unique_topic(<<"api-flow">>),
    {A, R} = setup_flow(Topic),
    ?assertMatch(#{<<"status">> := <<"connected">>, <<"status_reason">> := <<>>, <<"error">> := <<>>,
                   <<"rules">> := [], <<"connector">> := <<"conf1">>,
                   <<"parameters">> := #{<<"max_batch_bytes">> := <<"896KB">>, <<"required_acks">> := <<"all_isr">>,
                                         <<"buffer">> := #{<<"mode">> := <<"memory">>}}}, A),
    ?assert(is_integer(maps:get(<<"created_at">>, A))),
    ?assertMatch(#{<<"id">> := <<"rule_kafka">>, <<"from">> := [<<"sensors/#">>], <<"enable">> := true,
                   <<"action_details">> := [#{<<"type">> := <<"confluent_producer">>, <<"name">> := <<"to_kafka">>,
                                              <<"status">> := <<"connected">>}]}, R),
    {match, _} = re:run(maps:get(<<"created_at">>, R), "^\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d\\.\\d{3}\\+00:00$"),
    ?assertMatch({200, #{<<"rules">> := [<<"rule_kafka">>]}}, call(get, "/actions/confluent_producer:to_kafka")),
    ?assertMatch({200, #{<<"actions">> := [<<"to_kafka">>]}}, call(get, "/connectors/confluent_producer:conf1")),
    %% the hook path: 30 matching, 5 filtered out by WHERE, 5 on another topic
    N = 30,
    [{ok, _} = emqx_confluent_hooks:on_message_publish(msg(<<"sensors/", (integer_to_binary(I))/binary>>,
                                                           <<"{\"temp\":", (integer_to_binary(I))/binary, "}">>))
     || I <- lists:seq(1, N)],
    [{ok, _} = emqx_confluent_hooks:on_message_publish(msg(<<"sensors/x">>, <<"{\"temp\":-1}">>)) || _ <- lists:seq(1, 5)],
    [{ok, _} = emqx_confluent_hooks:on_message_publish(msg(<<"other/x">>, <<"{\"temp\":5}">>)) || _ <- lists:seq(1, 5)],
    %% $SYS messages are skipped
    Sys = (msg(<<"sensors/sys">>, <<"{\"temp\":5}">>))#message{flags = #{sys => true}},
    ?assertEqual({ok, Sys}, emqx_confluent_hooks:on_message_publish(Sys)),
    Records = ec_test_util:consume(Topic, N),
    ?assertEqual(N, length(Records)),
    [Rec | _] = Records,
    ?assertEqual(<<"dev-1">>, maps:get(<<"key">>, Rec)),
    ?assertEqual([<<"site">>, <<"berlin">>], maps:get(<<"headers">>, Rec)),
    ec_test_util:wait_until(fun() ->
                                    {200, #{<<"metrics">> := #{<<"success">> := S}}} = call(get, "/actions/confluent_producer:to_kafka/metrics"),
                                    S =:= N
                            end, 20000),
    {200, M} = call(get, "/actions/confluent_producer:to_kafka/metrics"),
    ?assertMatch(#{<<"matched">> := N, <<"success">> := N, <<"failed">> := 0, <<"dropped">> := 0,
                   <<"queuing">> := 0, <<"inflight">> := 0, <<"late_reply">> := 0}, maps:get(<<"metrics">>, M)),
    ?assertEqual(18, map_size(maps:get(<<"metrics">>, M))),
    ?assertMatch([#{<<"node">> := _, <<"metrics">> := #{<<"success">> := N}}], maps:get(<<"node_metrics">>, M)),
    {200, RM} = call(get, "/rules/rule_kafka/metrics"),
    %% actions.success counts Kafka's acknowledgements (sink-behaviour.md §10.3)
    ?assertMatch(#{<<"id">> := <<"rule_kafka">>,
                   <<"metrics">> := #{<<"matched">> := 35, <<"passed">> := 30, <<"failed.no_result">> := 5,
                                      <<"actions.total">> := 30, <<"actions.success">> := 30,
                                      <<"actions.failed">> := 0}}, RM),
    %% rates appear after a sampling period (5 s)
    ec_test_util:wait_until(fun() ->
                                    {200, #{<<"metrics">> := #{<<"rate_max">> := RateMax}}} =
                                        call(get, "/actions/confluent_producer:to_kafka/metrics"),
                                    RateMax > 0
                            end, 12000),
    %% Prometheus text: every sample line parses, and it carries the same count
    {200, Prom} = call(get, "/prometheus/stats"),
    Lines = [L || L <- binary:split(Prom, <<"\n">>, [global, trim_all])],
    [?assertMatch({match, _}, re:run(L, "^(# TYPE [a-z_]+ (counter|gauge)|[a-z_]+\\{id=\"[^\"]*\",node=\"[^\"]*\"\\} -?[0-9]+)$"), L)
     || L <- Lines],
    ?assert(lists:member(<<"emqx_confluent_action_success{id=\"confluent_producer:to_kafka\",node=\"",
                           (atom_to_binary(node()))/binary, "\"} 30">>, Lines)),
    ?assert(lists:member(<<"emqx_confluent_rule_matched{id=\"rule_kafka\",node=\"", (atom_to_binary(node()))/binary, "\"} 35">>, Lines)),
    %% reset
    ?assertMatch({204, _}, call(put, "/actions/confluent_producer:to_kafka/metrics/reset")),
    ?assertMatch({200, #{<<"metrics">> := #{<<"success">> := 0, <<"matched">> := 0}}},
                 call(get, "/actions/confluent_producer:to_kafka/metrics")),
    ?assertMatch({204, _}, call(put, "/rules/rule_kafka/metrics/reset")),
    ?assertMatch({200, #{<<"metrics">> := #{<<"matched">> := 0}}}, call(get, "/rules/rule_kafka/metrics")),
    %% summary and types
    ?assertMatch({200, [#{<<"name">> := <<"to_kafka">>, <<"status">> := <<"connected">>, <<"rules">> := [<<"rule_kafka">>],
                          <<"referenced_as_fallback_action_by">> := []}]}, call(get, "/actions_summary")),
    {200, Types} = call(get, "/action_types"),
    ?assert(lists:member(<<"confluent_producer">>, Types)),
    %% a disabled rule stops feeding the action; a disabled action is stopped
    {200, _} = call(put, "/rules/rule_kafka", (maps:with([<<"sql">>, <<"actions">>], R))#{<<"enable">> => false}),
    {ok, _} = emqx_confluent_hooks:on_message_publish(msg(<<"sensors/1">>, <<"{\"temp\":1}">>)),
    ?assertMatch({204, _}, call(put, "/actions/confluent_producer:to_kafka/enable/false")),
    ?assertMatch({200, #{<<"status">> := <<"stopped">>}}, call(get, "/actions/confluent_producer:to_kafka")),
    ?assertMatch({400, #{<<"message">> := <<"Forbidden operation, connector not enabled">>}},
                 call(post, "/actions/confluent_producer:to_kafka/start")),
    timer:sleep(500),
    ?assertEqual(N, length(ec_test_util:consume(Topic, N))).

t_validation_errors(_) ->
    {201, _} = call(post, "/connectors", ec_api:conn_body(plain, <<"k1">>)),
    Act = fun(P) -> #{<<"type">> => <<"kafka_producer">>, <<"name">> => <<"a1">>, <<"connector">> => <<"k1">>,
                      <<"parameters">> => P} end,
    Bad = fun(B) -> {400, #{<<"code">> := <<"BAD_REQUEST">>, <<"message">> := M}} = call(post, "/actions", B), M end,
    ?assertMatch(<<"parameters.topic:", _/binary>>, Bad(Act(#{}))),
    ?assertMatch(<<"connector: no kafka_producer connector named nope">>, Bad((Act(#{<<"topic">> => <<"t">>}))#{<<"connector">> => <<"nope">>})),
    ?assertMatch(<<"connector: required">>, Bad(maps:remove(<<"connector">>, Act(#{<<"topic">> => <<"t">>})))),
    ?assertMatch(<<"parameters.kafka_headers:", _/binary>>, Bad(Act(#{<<"topic">> => <<"t">>, <<"kafka_headers">> => <<"x${a}">>}))),
    ?assertMatch(<<"parameters", _/binary>>,
                 Bad(Act(#{<<"topic">> => <<"t">>, <<"partition_strategy">> => <<"key_dispatch">>,
                           <<"message">> => #{<<"key">> => <<>>}}))),
    {match, _} = re:run(Bad(Act(#{<<"topic">> => <<"dev-${clientid}">>,
                                  <<"buffer">> => #{<<"mode">> => <<"disk">>}})),
                        "disk-mode buffering is disallowed when using dynamic topics"),
    ?assertMatch(<<"parameters.compression:", _/binary>>, Bad(Act(#{<<"topic">> => <<"t">>, <<"compression">> => <<"brotli">>}))),
    ?assertEqual({200, []}, call(get, "/actions")),
    %% the 5.0.2-5.3.0 `kafka' name of parameters is accepted
    {201, Old} = call(post, "/actions", maps:remove(<<"parameters">>, (Act(#{}))#{<<"kafka">> => #{<<"topic">> => <<"t-old">>}})),
    ?assertMatch(#{<<"parameters">> := #{<<"topic">> := <<"t-old">>}}, Old),
    %% rules
    BadRule = fun(B) -> {400, #{<<"code">> := <<"BAD_REQUEST">>, <<"message">> := M}} = call(post, "/rules", B), M end,
    {match, _} = re:run(BadRule(#{<<"sql">> => <<"SELECT * FORM \"t\"">>}), "^sql: syntax error at line 1, column \\d+"),
    ?assertEqual(<<"sql: required">>, BadRule(#{})),
    ?assertEqual(<<"empty rule id is not allowed">>, BadRule(#{<<"id">> => <<>>, <<"sql">> => <<"SELECT * FROM \"t\"">>})),
    ?assertMatch(<<"actions: expected", _/binary>>, BadRule(#{<<"sql">> => <<"SELECT * FROM \"t\"">>, <<"actions">> => [<<"nocolon">>]})),
    ?assertMatch(<<"enable: expected true or false">>, BadRule(#{<<"sql">> => <<"SELECT * FROM \"t\"">>, <<"enable">> => <<"yes">>})),
    {201, #{<<"id">> := RandomId}} = call(post, "/rules", #{<<"sql">> => <<"SELECT * FROM \"t\"">>}),
    ?assertEqual(8, byte_size(RandomId)),
    ?assertMatch({400, #{<<"message">> := <<"rule id already exists">>}},
                 call(post, "/rules", #{<<"id">> => RandomId, <<"sql">> => <<"SELECT * FROM \"t\"">>})),
    %% PUT creates a rule that does not exist
    ?assertMatch({200, #{<<"id">> := <<"made_by_put">>}}, call(put, "/rules/made_by_put", #{<<"sql">> => <<"SELECT 1 as x FROM \"a\"">>})),
    ?assertMatch({404, #{<<"message">> := <<"Rule Id Not Found">>}}, call(get, "/rules/nope")),
    ?assertMatch({404, _}, call(delete, "/rules/nope")).

t_dependants(_) ->
    Topic = ec_test_util:unique_topic(<<"api-deps">>),
    {_, _} = setup_flow(Topic),
    {400, E1} = call(delete, "/connectors/confluent_producer:conf1"),
    ?assertMatch(#{<<"code">> := <<"BAD_REQUEST">>}, E1),
    {match, _} = re:run(maps:get(<<"message">>, E1), "Cannot delete connector while there are active channels defined for this connector.*to_kafka"),
    ?assertMatch({400, #{<<"message">> := <<"Cannot delete action while active rules are depending on it">>,
                         <<"rules">> := [<<"rule_kafka">>]}}, call(delete, "/actions/confluent_producer:to_kafka")),
    ?assertMatch({204, _}, call(delete, "/actions/confluent_producer:to_kafka?also_delete_dep_actions=true")),
    ?assertMatch({200, #{<<"actions">> := [], <<"action_details">> := []}}, call(get, "/rules/rule_kafka")),
    ?assertMatch({204, _}, call(delete, "/connectors/confluent_producer:conf1")).

t_probes(_) ->
    Body = ec_api:conn_body(confluent, <<"probe1">>),
    ?assertMatch({204, _}, call(post, "/connectors_probe", Body)),
    WrongAuth = (maps:get(<<"authentication">>, Body))#{<<"password">> => <<"wrong">>},
    ?assertMatch({400, #{<<"code">> := <<"TEST_FAILED">>}},
                 call(post, "/connectors_probe", Body#{<<"authentication">> => WrongAuth})),
    ?assertMatch({400, #{<<"code">> := <<"BAD_REQUEST">>}},
                 call(post, "/connectors_probe", Body#{<<"connect_timeout">> => <<"x">>})),
    ?assertEqual({200, []}, call(get, "/connectors")),
    {201, _} = call(post, "/connectors", Body),
    %% a probe of an existing connector may send the secret back masked
    ?assertMatch({204, _}, call(post, "/connectors_probe",
                               Body#{<<"authentication">> => WrongAuth#{<<"password">> => <<"******">>}})),
    Topic = ec_test_util:unique_topic(<<"probe">>),
    ok = ec_test_util:create_topic(Topic, 1),
    Act = fun(T) -> #{<<"type">> => <<"confluent_producer">>, <<"connector">> => <<"probe1">>,
                      <<"parameters">> => #{<<"topic">> => T}} end,
    ?assertMatch({204, _}, call(post, "/actions_probe", Act(Topic))),
    %% a disk-mode action is probed without a buffer directory of its own
    DiskAct = (Act(Topic))#{<<"parameters">> => #{<<"topic">> => Topic,
                                                  <<"buffer">> => #{<<"mode">> => <<"disk">>}}},
    ?assertMatch({204, _}, call(post, "/actions_probe", DiskAct)),
    Missing = <<"no-such-topic-", (integer_to_binary(erlang:unique_integer([positive])))/binary>>,
    ?assertMatch({400, #{<<"code">> := <<"TEST_FAILED">>, <<"message">> := <<"Unknown topic or partition: ", _/binary>>}},
                 call(post, "/actions_probe", Act(Missing))),
    ?assertMatch({400, #{<<"code">> := <<"TEST_FAILED">>, <<"message">> := <<"Connector \"nope\" not found">>}},
                 call(post, "/actions_probe", (Act(Topic))#{<<"connector">> => <<"nope">>})),
    ?assertEqual({200, []}, call(get, "/actions")).

%% ---- rule_test ------------------------------------------------------------------------

t_rule_test_matches_cli(_) ->
    Cases = [{<<"SELECT payload.t as t, clientid FROM \"t/#\"">>,
              #{<<"event_type">> => <<"message_publish">>, <<"topic">> => <<"t/1">>, <<"clientid">> => <<"c1">>,
                <<"payload">> => <<"{\"t\":21.5}">>, <<"qos">> => 1}},
             {<<"SELECT payload.msg as msg, clientid, username, topic, qos FROM \"t/#\"">>, #{}},
             {<<"SELECT clientid, proto_ver, event FROM \"$events/client/connected\"">>,
              #{<<"event_type">> => <<"client_connected">>, <<"clientid">> => <<"dev9">>}},
             {<<"FOREACH payload.l as e DO e, clientid FROM \"t/#\"">>, #{<<"topic">> => <<"t/2">>, <<"payload">> => <<"{\"l\":[1,2]}">>}},
             {<<"SELECT upper(payload) as u FROM \"t/#\" WHERE qos = 2">>, #{<<"topic">> => <<"t/3">>, <<"qos">> => 2,
                                                                             <<"payload">> => <<"abc">>}}],
    Cli = filename:join([ec_test_util:root(), "priv", "bin", "rule-test"]),
    [begin
         {200, Out} = call(post, "/rule_test", #{<<"sql">> => Sql, <<"context">> => Ctx}),
         {ok, Full} = emqx_confluent_rule_test:context(Ctx),
         %% the CLI with the same completed context (the random id/timestamp are not selected)
         {ok, Line} = emqx_confluent_nif:json_encode(#{<<"sql">> => Sql, <<"context">> => Full}),
         File = filename:join("/tmp", "ec-rule-test-" ++ integer_to_list(erlang:unique_integer([positive]))),
         ok = file:write_file(File, [Line, "\n"]),
         Answer = os:cmd(Cli ++ " < " ++ File),
         ok = file:delete(File),
         {ok, #{<<"matched">> := true, <<"output">> := CliOut}} = emqx_confluent_nif:json_decode(list_to_binary(Answer)),
         ?assertEqual(CliOut, Out, Sql)
     end || {Sql, Ctx} <- Cases],
    ?assertMatch({200, #{<<"msg">> := <<"hello">>, <<"clientid">> := <<"c_emqx">>, <<"topic">> := <<"t/a">>}},
                 call(post, "/rule_test", #{<<"sql">> => <<"SELECT payload.msg as msg, clientid, topic FROM \"t/#\"">>,
                                            <<"context">> => #{}})),
    ?assertMatch({412, #{<<"code">> := <<"NOT_MATCH">>, <<"message">> := <<"SQL Not Match">>}},
                 call(post, "/rule_test", #{<<"sql">> => <<"SELECT * FROM \"x/#\"">>, <<"context">> => #{<<"topic">> => <<"t/1">>}})),
    {400, #{<<"code">> := <<"BAD_REQUEST">>, <<"message">> := M}} =
        call(post, "/rule_test", #{<<"sql">> => <<"SELECT * FROM">>, <<"context">> => #{}}),
    {match, _} = re:run(M, "line 1, column"),
    ?assertMatch({400, _}, call(post, "/rule_test", #{<<"context">> => #{}})),
    ?assertMatch({400, _}, call(post, "/rule_test", #{<<"sql">> => <<"SELECT 1 FROM \"t\"">>,
                                                      <<"context">> => #{<<"event_type">> => <<"bogus">>}})).

t_rules_listing(_) ->
    [{201, _} = call(post, "/rules", #{<<"id">> => <<"r", (integer_to_binary(I))/binary>>,
                                       <<"sql">> => <<"SELECT * FROM \"t/", (integer_to_binary(I))/binary, "\"">>,
                                       <<"description">> => case I rem 2 of 0 -> <<"even">>; 1 -> <<"odd">> end,
                                       <<"enable">> => I =/= 3})
     || I <- lists:seq(1, 5)],
    ?assertMatch({200, #{<<"meta">> := #{<<"count">> := 5, <<"page">> := 1, <<"limit">> := 100, <<"hasnext">> := false}}},
                 call(get, "/rules")),
    {200, #{<<"data">> := P2, <<"meta">> := #{<<"hasnext">> := true}}} = call(get, "/rules?page=2&limit=2"),
    ?assertEqual([<<"r3">>, <<"r4">>], [maps:get(<<"id">>, R) || R <- P2]),
    {200, #{<<"data">> := Even}} = call(get, "/rules?like_description=even"),
    ?assertEqual([<<"r2">>, <<"r4">>], [maps:get(<<"id">>, R) || R <- Even]),
    {200, #{<<"data">> := Off}} = call(get, "/rules?enable=false"),
    ?assertEqual([<<"r3">>], [maps:get(<<"id">>, R) || R <- Off]),
    {200, #{<<"data">> := From}} = call(get, "/rules?from=t%2F5"),
    ?assertEqual([<<"r5">>], [maps:get(<<"id">>, R) || R <- From]),
    ?assertMatch({400, _}, call(get, "/rules?page=0")).

%% ---- restart -----------------------------------------------------------------------------

t_restart_restores_and_resumes(Config) ->
    Topic = ec_test_util:unique_topic(<<"api-restart">>),
    {_, _} = setup_flow(Topic),
    {200, Before} = call(get, "/actions/confluent_producer:to_kafka"),
    {200, RBefore} = call(get, "/rules/rule_kafka"),
    {ok, _} = emqx_confluent_hooks:on_message_publish(msg(<<"sensors/1">>, <<"{\"temp\":1}">>)),
    ok = ec_api:stop_app(),
    ?assertEqual(undefined, emqx_confluent_mgr:pipeline()),
    ok = ec_api:start_app(filename:join(?config(priv_dir, Config), "data")),
    ec_api:wait_status("/actions/confluent_producer:to_kafka", <<"connected">>, 20000),
    {200, After} = call(get, "/actions/confluent_producer:to_kafka"),
    ?assertEqual(maps:without([<<"node_status">>], Before), maps:without([<<"node_status">>], After)),
    ?assertEqual({200, RBefore#{<<"action_details">> => maps:get(<<"action_details">>, RBefore)}}, call(get, "/rules/rule_kafka")),
    {ok, _} = emqx_confluent_hooks:on_message_publish(msg(<<"sensors/2">>, <<"{\"temp\":2}">>)),
    Recs = ec_test_util:consume(Topic, 2),
    ?assertEqual([<<"{\"up\":{\"site\":\"berlin\"},\"temp\":1,\"clientid\":\"dev-1\"}">>,
                  <<"{\"up\":{\"site\":\"berlin\"},\"temp\":2,\"clientid\":\"dev-1\"}">>],
                 lists:sort([maps:get(<<"payload">>, R) || R <- Recs])),
    %% the file is only readable by its owner
    {ok, #{mode := Mode}} = file_info(emqx_confluent_store:file(filename:join(?config(priv_dir, Config), "data"))),
    ?assertEqual(8#600, Mode band 8#777).

file_info(F) ->
    {ok, I} = file:read_file_info(F),
    {ok, #{mode => element(8, I)}}.

%% ---- EMQX hooks ------------------------------------------------------------------------------

%% with EMQX's hook registry present (a stand-in with emqx_hooks' API), start
%% registers message.publish and stop removes it
t_hooks_registered_with_emqx(Config) ->
    ok = ec_api:stop_app(),
    {ok, _} = emqx_hooks:start_fake(),
    try
        ok = ec_api:start_app(filename:join(?config(priv_dir, Config), "data")),
        ?assertEqual([{'message.publish', {emqx_confluent_hooks, on_message_publish, []}, 890}],
                     emqx_hooks:registered()),
        ?assertMatch({200, #{<<"emqx">> := true}}, call(get, "/status")),
        ok = ec_api:stop_app(),
        ?assertEqual([], emqx_hooks:registered())
    after
        emqx_hooks:stop_fake(),
        ok = ec_api:start_app(filename:join(?config(priv_dir, Config), "data"))
    end.

%% query_mode sync on the hook path: the publisher returns once Kafka has
%% acknowledged (or refused) the record, and no reply is left in its mailbox
t_sync_action_on_hook(_) ->
    Topic = ec_test_util:unique_topic(<<"api-sync">>),
    ok = ec_test_util:create_topic(Topic, 1),
    {201, _} = call(post, "/connectors", ec_api:conn_body(plain, <<"ks">>)),
    {201, #{<<"status">> := <<"connected">>}} =
        call(post, "/actions", #{<<"type">> => <<"kafka_producer">>, <<"name">> => <<"sync_a">>, <<"connector">> => <<"ks">>,
                                 <<"parameters">> => #{<<"topic">> => Topic, <<"query_mode">> => <<"sync">>,
                                                       <<"sync_query_timeout">> => <<"10s">>}}),
    %% a dynamic topic that does not exist: refused fast, counted as failed
    {201, _} = call(post, "/actions", #{<<"type">> => <<"kafka_producer">>, <<"name">> => <<"sync_bad">>, <<"connector">> => <<"ks">>,
                                        <<"parameters">> => #{<<"topic">> => <<"no-such-${clientid}">>,
                                                              <<"query_mode">> => <<"sync">>}}),
    {201, _} = call(post, "/rules", #{<<"id">> => <<"rs">>, <<"sql">> => <<"SELECT clientid FROM \"s/#\"">>,
                                      <<"actions">> => [<<"kafka_producer:sync_a">>]}),
    {201, _} = call(post, "/rules", #{<<"id">> => <<"rb">>, <<"sql">> => <<"SELECT clientid FROM \"b/#\"">>,
                                      <<"actions">> => [<<"kafka_producer:sync_bad">>]}),
    {ok, A} = emqx_confluent_mgr:action_res(<<"kafka_producer:sync_a">>),
    [begin
         Before = maps:get(success, emqx_confluent_nif:action_metrics(A)),
         {ok, _} = emqx_confluent_hooks:on_message_publish(msg(<<"s/1">>, <<"{}">>)),
         %% acknowledged before the hook returned
         ?assertEqual(Before + 1, maps:get(success, emqx_confluent_nif:action_metrics(A)))
     end || _ <- lists:seq(1, 5)],
    {ok, _} = emqx_confluent_hooks:on_message_publish(msg(<<"b/1">>, <<"{}">>)),
    {ok, Bad} = emqx_confluent_mgr:action_res(<<"kafka_producer:sync_bad">>),
    ?assertMatch(#{failed := 1}, emqx_confluent_nif:action_metrics(Bad)),
    ?assertMatch({200, #{<<"metrics">> := #{<<"actions.success">> := 5, <<"actions.total">> := 5}}},
                 call(get, "/rules/rs/metrics")),
    ?assertMatch({200, #{<<"metrics">> := #{<<"actions.failed">> := 1, <<"actions.success">> := 0}}},
                 call(get, "/rules/rb/metrics")),
    {messages, Mailbox} = process_info(self(), messages),
    ?assertEqual([], [M || M <- Mailbox, element(1, M) =:= ec_action_reply]),
    ?assertEqual(5, length(ec_test_util:consume(Topic, 5))).

%% $events rules inside EMQX: the event hooks are registered only while an
%% enabled rule needs them, and an event's columns reach Kafka
t_event_rules_with_emqx(Config) ->
    ok = ec_api:stop_app(),
    {ok, _} = emqx_hooks:start_fake(),
    Data = filename:join(?config(priv_dir, Config), "data"),
    try
        ok = ec_api:start_app(Data),
        Topic = ec_test_util:unique_topic(<<"api-events">>),
        ok = ec_test_util:create_topic(Topic, 1),
        {201, _} = call(post, "/connectors", ec_api:conn_body(plain, <<"ke">>)),
        {201, _} = call(post, "/actions", #{<<"type">> => <<"kafka_producer">>, <<"name">> => <<"ev">>,
                                            <<"connector">> => <<"ke">>,
                                            <<"parameters">> => #{<<"topic">> => Topic}}),
        Hooks = fun() -> lists:sort([HP || {HP, _, _} <- emqx_hooks:registered()]) end,
        ?assertEqual(['message.publish'], Hooks()),
        {201, _} = call(post, "/rules", #{<<"id">> => <<"conn">>,
                                          <<"sql">> => <<"SELECT clientid, username, peername, proto_ver, keepalive, "
                                                         "expiry_interval, conn_props, event FROM \"$events/client/connected\"">>,
                                          <<"actions">> => [<<"kafka_producer:ev">>]}),
        {201, _} = call(post, "/rules", #{<<"id">> => <<"subs">>,
                                          <<"sql">> => <<"SELECT clientid, topic, qos FROM \"$events/session_subscribed\"">>,
                                          <<"actions">> => [<<"kafka_producer:ev">>]}),
        ?assertEqual(['client.connected', 'message.publish', 'session.subscribed'], Hooks()),
        %% EMQX calls the callbacks it was given
        [{_, {M, F, []}, 890}] = [H || {'client.connected', _, _} = H <- emqx_hooks:registered()],
        ClientInfo = #{clientid => <<"dev-9">>, username => <<"u9">>, peerhost => {10, 0, 0, 9},
                       client_attrs => #{}},
        ConnInfo = #{clientid => <<"dev-9">>, username => <<"u9">>, peername => {{10, 0, 0, 9}, 50000},
                     sockname => {{127, 0, 0, 1}, 1883}, proto_name => <<"MQTT">>, proto_ver => 5,
                     keepalive => 60, clean_start => true, expiry_interval => 7200000,
                     conn_props => #{'User-Property' => [{<<"a">>, <<"b">>}]}, connected_at => 1700000000000},
        ok = M:F(ClientInfo, ConnInfo),
        [{_, {M2, F2, []}, 890}] = [H || {'session.subscribed', _, _} = H <- emqx_hooks:registered()],
        ok = M2:F2(ClientInfo, <<"cmd/dev-9">>, #{qos => 1, share => <<"g">>}),
        [R1, R2] = ec_test_util:consume(Topic, 2),
        {ok, V1} = emqx_confluent_nif:json_decode(maps:get(<<"payload">>, R1)),
        ?assertEqual(#{<<"clientid">> => <<"dev-9">>, <<"username">> => <<"u9">>, <<"peername">> => <<"10.0.0.9:50000">>,
                       <<"proto_ver">> => 5, <<"keepalive">> => 60, <<"expiry_interval">> => 7200,
                       <<"conn_props">> => #{<<"User-Property">> => #{<<"a">> => <<"b">>},
                                             <<"User-Property-Pairs">> => [#{<<"key">> => <<"a">>, <<"value">> => <<"b">>}]},
                       <<"event">> => <<"client.connected">>}, V1),
        {ok, V2} = emqx_confluent_nif:json_decode(maps:get(<<"payload">>, R2)),
        ?assertEqual(#{<<"clientid">> => <<"dev-9">>, <<"topic">> => <<"$share/g/cmd/dev-9">>, <<"qos">> => 1}, V2),
        %% disabling and deleting rules removes their hooks
        {200, _} = call(put, "/rules/subs", #{<<"sql">> => <<"SELECT clientid FROM \"$events/session_subscribed\"">>,
                                              <<"enable">> => false}),
        ?assertEqual(['client.connected', 'message.publish'], Hooks()),
        {204, _} = call(delete, "/rules/conn"),
        ?assertEqual(['message.publish'], Hooks()),
        ok = ec_api:stop_app(),
        ?assertEqual([], emqx_hooks:registered())
    after
        emqx_hooks:stop_fake(),
        _ = application:stop(emqx_confluent),
        ok = ec_api:start_app(Data)
    end.

%% buffer.mode disk through the API: the action's segment files live under
%% the data directory, records reach Kafka, deleting the action removes them
t_disk_buffer_over_rest(Config) ->
    Topic = ec_test_util:unique_topic(<<"api-disk">>),
    ok = ec_test_util:create_topic(Topic, 2),
    {201, _} = call(post, "/connectors", ec_api:conn_body(plain, <<"kd">>)),
    {201, A} = call(post, "/actions", #{<<"type">> => <<"kafka_producer">>, <<"name">> => <<"disk_a">>,
                                        <<"connector">> => <<"kd">>,
                                        <<"parameters">> => #{<<"topic">> => Topic,
                                                              <<"buffer">> => #{<<"mode">> => <<"disk">>}}}),
    ?assertMatch(#{<<"status">> := <<"connected">>,
                   <<"parameters">> := #{<<"buffer">> := #{<<"mode">> := <<"disk">>, <<"segment_bytes">> := <<"10MB">>}}}, A),
    ?assertNot(maps:is_key(<<"buffer_dir">>, A)),
    {201, _} = call(post, "/rules", #{<<"id">> => <<"rd">>, <<"sql">> => <<"SELECT clientid FROM \"d/#\"">>,
                                      <<"actions">> => [<<"kafka_producer:disk_a">>]}),
    [{ok, _} = emqx_confluent_hooks:on_message_publish(msg(<<"d/1">>, <<"{}">>)) || _ <- lists:seq(1, 10)],
    ?assertEqual(10, length(ec_test_util:consume(Topic, 10))),
    Dir = filename:join([?config(priv_dir, Config), "data", "buffers", "kafka_producer_disk_a"]),
    ?assertMatch([_ | _], filelib:wildcard(filename:join(Dir, "p*/*.seg"))),
    {204, _} = call(delete, "/actions/kafka_producer:disk_a?also_delete_dep_actions=true"),
    ?assertNot(filelib:is_dir(Dir)).

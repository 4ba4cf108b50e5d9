%% @doc The message.publish path in one NIF call: an EMQX #message{} record
%% becomes the rule columns (emqx-plugin.md §7.1), matching rules run and
%% their outputs are produced by the bound actions to the real broker.
-module(emqx_confluent_pipeline_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").
-include("emqx_message.hrl").

-compile([export_all, nowarn_export_all]).

-define(NIF, emqx_confluent_nif).

all() -> [t_publish_columns_and_actions, t_ipv6_and_no_properties, t_many_matching_rules, t_bad_message].

msg(Topic, Payload, Headers) ->
    #message{id = <<16#00, 16#06, 16#12, 16#0A, 16#8F, 16#6B, 16#4C, 16#3E, 16#F4, 16#43, 16#00, 16#00,
                    16#A3, 16#D4, 16#00, 16#02>>,
             qos = 1, from = <<"dev-7">>, flags = #{dup => false, retain => false},
             headers = Headers, topic = Topic, payload = Payload, timestamp = 1700000000000}.

headers() ->
    #{username => <<"u1">>, peerhost => {10, 0, 0, 7}, peername => {{10, 0, 0, 7}, 51644},
      proto_ver => 5, protocol => mqtt, client_attrs => #{<<"site">> => <<"berlin">>},
      properties => #{'User-Property' => [{<<"k1">>, <<"v1">>}, {<<"k1">>, <<"v2">>}],
                      'Content-Type' => <<"application/json">>}}.

setup(Topic) ->
    ok = ec_test_util:create_topic(Topic, 1),
    {ok, A} = ?NIF:action_new(ec_test_util:connector_conf(plain),
                              #{<<"parameters">> => #{<<"topic">> => Topic}}),
    {ok, R1} = ?NIF:rule_compile(<<"r1">>, <<"SELECT * FROM \"t/#\"">>),
    {ok, R2} = ?NIF:rule_compile(<<"r2">>, <<"SELECT payload.temp as temp, clientid, "
                                             "pub_props.'User-Property'.k1 as up, peerhost "
                                             "FROM \"t/#\" WHERE payload.temp > 20">>),
    {ok, R3} = ?NIF:rule_compile(<<"r3">>, <<"SELECT 1 as x FROM \"other/#\"">>),
    {ok, Set} = ?NIF:ruleset_new([R1, R2, R3]),
    {ok, P} = ?NIF:pipeline_new(Set, [{<<"r1">>, [A]}, {<<"r2">>, [A]}, {<<"r3">>, [A]}]),
    {A, R2, P}.

t_publish_columns_and_actions(_) ->
    Topic = ec_test_util:unique_topic(<<"pipe">>),
    {A, R2, P} = setup(Topic),
    ?assertEqual(2, ?NIF:pipeline_publish(P, msg(<<"t/1">>, <<"{\"temp\":25.5}">>, headers()), <<"emqx@127.0.0.1">>)),
    ?assertEqual(1, ?NIF:pipeline_publish(P, msg(<<"t/2">>, <<"{\"temp\":10}">>, headers()), <<"emqx@127.0.0.1">>)),
    ?assertEqual(0, ?NIF:pipeline_publish(P, msg(<<"nothing">>, <<"{}">>, headers()), <<"emqx@127.0.0.1">>)),
    [V1, V2, V3] = [begin {ok, V} = ?NIF:json_decode(maps:get(<<"payload">>, Rec)), V end
                    || Rec <- ec_test_util:consume(Topic, 3)],
    ?assertMatch(#{<<"id">> := <<"0006120A8F6B4C3EF4430000A3D40002">>, <<"clientid">> := <<"dev-7">>,
                   <<"username">> := <<"u1">>, <<"peerhost">> := <<"10.0.0.7">>,
                   <<"peername">> := <<"10.0.0.7:51644">>, <<"topic">> := <<"t/1">>, <<"qos">> := 1,
                   <<"flags">> := #{<<"dup">> := false, <<"retain">> := false},
                   <<"payload">> := <<"{\"temp\":25.5}">>, <<"publish_received_at">> := 1700000000000,
                   <<"client_attrs">> := #{<<"site">> := <<"berlin">>}, <<"event">> := <<"message.publish">>,
                   <<"node">> := <<"emqx@127.0.0.1">>, <<"metadata">> := #{<<"rule_id">> := <<"r1">>},
                   <<"pub_props">> := #{<<"User-Property">> := #{<<"k1">> := <<"v2">>},
                                        <<"User-Property-Pairs">> := [#{<<"key">> := <<"k1">>, <<"value">> := <<"v1">>},
                                                                      #{<<"key">> := <<"k1">>, <<"value">> := <<"v2">>}],
                                        <<"Content-Type">> := <<"application/json">>}}, V1),
    ?assert(is_integer(maps:get(<<"timestamp">>, V1))),
    ?assertEqual(#{<<"temp">> => 25.5, <<"clientid">> => <<"dev-7">>, <<"up">> => <<"v2">>,
                   <<"peerhost">> => <<"10.0.0.7">>}, V2),
    ?assertMatch(#{<<"topic">> := <<"t/2">>, <<"metadata">> := #{<<"rule_id">> := <<"r1">>}}, V3),
    ?assertMatch(#{matched := 2, passed := 1, 'failed.no_result' := 1, 'actions.total' := 1,
                   'actions.failed' := 0}, ?NIF:rule_metrics(R2)),
    ok = ?NIF:action_destroy(A).

t_ipv6_and_no_properties(_) ->
    Topic = ec_test_util:unique_topic(<<"pipe6">>),
    {A, _R2, P} = setup(Topic),
    H = #{peerhost => {0, 0, 0, 0, 0, 0, 0, 1}, peername => {{0, 0, 0, 0, 0, 0, 0, 1}, 1883}},
    M = (msg(<<"t/x">>, [<<"{\"te">>, <<"mp\":1}">>], H))#message{from = emqx_sys},
    ?assertEqual(1, ?NIF:pipeline_publish(P, M, <<"n1">>)),
    [Rec] = ec_test_util:consume(Topic, 1),
    {ok, V} = ?NIF:json_decode(maps:get(<<"payload">>, Rec)),
    ?assertMatch(#{<<"peerhost">> := <<"::1">>, <<"peername">> := <<"::1:1883">>,
                   <<"clientid">> := <<"emqx_sys">>, <<"username">> := <<"undefined">>,
                   <<"payload">> := <<"{\"temp\":1}">>, <<"client_attrs">> := #{},
                   <<"pub_props">> := #{<<"User-Property">> := #{}}}, V),
    ?assertNot(maps:is_key(<<"User-Property-Pairs">>, maps:get(<<"pub_props">>, V))),
    ok = ?NIF:action_destroy(A).

%% every matching rule runs, however many there are
t_many_matching_rules(_) ->
    Topic = ec_test_util:unique_topic(<<"pipe-many">>),
    ok = ec_test_util:create_topic(Topic, 1),
    {ok, A} = ?NIF:action_new(ec_test_util:connector_conf(plain), #{<<"parameters">> => #{<<"topic">> => Topic}}),
    Ids = [integer_to_binary(I) || I <- lists:seq(1, 70)],
    Rules = [begin {ok, R} = ?NIF:rule_compile(Id, <<"SELECT clientid FROM \"t/#\"">>), R end || Id <- Ids],
    {ok, Set} = ?NIF:ruleset_new(Rules),
    {ok, P} = ?NIF:pipeline_new(Set, [{Id, [A]} || Id <- Ids]),
    ?assertEqual(70, ?NIF:pipeline_publish(P, msg(<<"t/1">>, <<"{}">>, headers()), <<"n">>)),
    ?assertMatch(#{matched := 1, 'actions.total' := 1}, ?NIF:rule_metrics(lists:last(Rules))),
    ?assertEqual(70, length(ec_test_util:consume(Topic, 70))),
    ok = ?NIF:action_destroy(A).

t_bad_message(_) ->
    {ok, Set} = ?NIF:ruleset_new([]),
    {ok, P} = ?NIF:pipeline_new(Set, []),
    ?assertError(badarg, ?NIF:pipeline_publish(P, {not_a_message}, <<"n">>)),
    ?assertError(badarg, ?NIF:pipeline_publish(P, (msg(<<"t">>, <<>>, #{}))#message{topic = 42}, <<"n">>)),
    ?assertError(badarg, ?NIF:pipeline_new(Set, [{<<"no-such-rule">>, []}])).

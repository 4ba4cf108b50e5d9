%% @doc The Kafka/Confluent producer action against the real broker: records
%% rendered from rule outputs (key, value, timestamp, headers) read back by a
%% consumer; partition placement by key_dispatch and murmur2; every codec;
%% SASL_SSL with right and wrong secrets; sync replies and timeouts; the
%% per-partition buffer limit; metrics.
-module(emqx_confluent_sink_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-compile([export_all, nowarn_export_all]).

-define(NIF, emqx_confluent_nif).

all() ->
    [t_default_templates_confluent, t_custom_templates_and_headers, t_key_dispatch_placement,
     t_murmur2_placement, t_compression_codecs, t_wrong_secret, t_config_errors_name_field,
     t_render_failures_counted, t_sync_reply_after_ack, t_sync_timeout_broker_unreachable,
     t_buffer_limit_drops_oldest_exactly, t_buffered_until_kafka_reachable,
     t_topic_recreated_smaller].

output(ClientId, Payload) ->
    #{<<"clientid">> => ClientId, <<"topic">> => <<"t/1">>, <<"qos">> => 1,
      <<"payload">> => Payload, <<"timestamp">> => 1700000000123,
      <<"metadata">> => #{<<"rule_id">> => <<"r1">>}}.

action(Topic, Params) ->
    #{<<"parameters">> => maps:merge(#{<<"topic">> => Topic}, Params)}.

new_action(Kind, Topic, Params) ->
    {ok, A} = ?NIF:action_new(ec_test_util:connector_conf(Kind), action(Topic, Params)),
    A.

send_sync(A, Out) ->
    {ok, Ref} = ?NIF:action_send(A, Out, true),
    receive {ec_action_reply, Ref, ok, P, Off} -> {P, Off};
            {ec_action_reply, Ref, {error, E}} -> error({send_failed, E})
    after 30000 -> error(no_reply)
    end.

t_default_templates_confluent(_) ->
    Topic = ec_test_util:unique_topic(<<"sink-default">>),
    ok = ec_test_util:create_topic(Topic, 1),
    A = new_action(confluent, Topic, #{}),
    ?assertEqual(ok, ?NIF:action_health(A)),
    Out = output(<<"dev-1">>, <<"{\"msg\":\"Hello Confluent\"}">>),
    {0, 0} = send_sync(A, Out),
    [Rec] = ec_test_util:consume(Topic, 1),
    %% key ${.clientid}, value ${.} (the whole output as JSON), timestamp ${.timestamp}
    ?assertMatch(#{<<"key">> := <<"dev-1">>, <<"ts">> := 1700000000123}, Rec),
    {ok, Value} = ?NIF:json_decode(maps:get(<<"payload">>, Rec)),
    ?assertEqual(Out, Value),
    ?assertMatch(#{matched := 1, success := 1, failed := 0, queuing := 0, inflight := 0},
                 ?NIF:action_metrics(A)),
    %% every counter of sink-behaviour.md §10.1 is there (and the disk buffer's start-up report)
    ?assertEqual(lists:sort([matched, success, failed, dropped, 'dropped.queue_full',
                             'dropped.resource_stopped', 'dropped.resource_not_found',
                             'dropped.expired', 'dropped.other', retried, 'retried.success',
                             'retried.failed', late_reply, received, queuing, queuing_bytes,
                             inflight, 'buffer.replayed', 'buffer.skipped_bytes']),
                 lists:sort(maps:keys(?NIF:action_metrics(A)))),
    ok = ?NIF:action_destroy(A).

t_custom_templates_and_headers(_) ->
    Topic = ec_test_util:unique_topic(<<"sink-hdr">>),
    ok = ec_test_util:create_topic(Topic, 1),
    A = new_action(plain, Topic,
                   #{<<"message">> => #{<<"key">> => <<"${clientid}-${payload.n}">>,
                                        <<"value">> => <<"t=${payload.temp}">>,
                                        <<"timestamp">> => <<"${payload.ts}">>},
                     <<"kafka_headers">> => <<"${pub_props.User-Property-Pairs}">>,
                     <<"kafka_ext_headers">> => [#{<<"kafka_ext_header_key">> => <<"clientid">>,
                                                   <<"kafka_ext_header_value">> => <<"${clientid}">>},
                                                 #{<<"kafka_ext_header_key">> => <<"static">>,
                                                   <<"kafka_ext_header_value">> => <<"v">>}]}),
    Out = (output(<<"c9">>, <<"{\"n\":7,\"temp\":21.5,\"ts\":\"1661326462115\"}">>))#{
            <<"pub_props">> => #{<<"User-Property-Pairs">> => [#{<<"key">> => <<"u1">>, <<"value">> => <<"a">>},
                                                               #{<<"key">> => <<"u1">>, <<"value">> => <<"b">>}]}},
    _ = send_sync(A, Out),
    %% an empty rendered key is a Kafka NULL key
    _ = send_sync(A, #{<<"payload">> => <<"{}">>}),
    [R1, R2] = ec_test_util:consume(Topic, 2),
    ?assertMatch(#{<<"key">> := <<"c9-7">>, <<"payload">> := <<"t=21.5">>, <<"ts">> := 1661326462115,
                   <<"headers">> := [<<"u1">>, <<"a">>, <<"u1">>, <<"b">>, <<"clientid">>, <<"c9">>,
                                     <<"static">>, <<"v">>]}, R1),
    ?assertMatch(#{<<"key">> := <<"-">>, <<"payload">> := <<"t=">>}, R2),
    ok = ?NIF:action_destroy(A).

%% EMQX's key_dispatch vectors (sink-behaviour.md §4.3) on a 12-partition topic
t_key_dispatch_placement(_) ->
    placement(<<"key_dispatch">>, [{<<"a">>, 11}, {<<"abc">>, 3}, {<<"clientid-1">>, 8},
                                   {<<"hello world!">>, 7}, {<<"0123456789abcdef">>, 5},
                                   {<<"device-42">>, 9}]).

%% Java's default partitioner (values from kafka-clients' Utils.murmur2)
t_murmur2_placement(_) ->
    placement(<<"murmur2">>, [{<<"a">>, 4}, {<<"abc">>, 3}, {<<"21">>, 0}, {<<"foobar">>, 6},
                              {<<"clientid-1">>, 8}, {<<"device-42">>, 9}]).

placement(Strategy, Vectors) ->
    Topic = ec_test_util:unique_topic(<<"sink-part">>),
    ok = ec_test_util:create_topic(Topic, 12),
    A = new_action(plain, Topic, #{<<"partition_strategy">> => Strategy}),
    [begin
         {P, _} = send_sync(A, output(Key, <<"{}">>)),
         ?assertEqual({Key, Want}, {Key, P})
     end || {Key, Want} <- Vectors],
    Recs = ec_test_util:consume(Topic, length(Vectors)),
    Got = lists:sort([{maps:get(<<"key">>, R), maps:get(<<"partition">>, R)} || R <- Recs]),
    ?assertEqual(lists:sort(Vectors), Got),
    ok = ?NIF:action_destroy(A).

t_compression_codecs(_) ->
    Topic = ec_test_util:unique_topic(<<"sink-codec">>),
    ok = ec_test_util:create_topic(Topic, 1),
    Codecs = [<<"no_compression">>, <<"gzip">>, <<"snappy">>, <<"lz4">>, <<"zstd">>],
    Big = binary:copy(<<"{\"temp\":21.5,\"id\":\"sensor\"}">>, 40),
    [begin
         A = new_action(plain, Topic, #{<<"compression">> => C,
                                        <<"message">> => #{<<"value">> => <<"${payload}">>}}),
         _ = send_sync(A, output(C, Big)),
         ok = ?NIF:action_destroy(A)
     end || C <- Codecs],
    Recs = ec_test_util:consume(Topic, length(Codecs)),
    ?assertEqual(Codecs, [maps:get(<<"key">>, R) || R <- Recs]),
    ?assert(lists:all(fun(R) -> maps:get(<<"payload">>, R) =:= Big end, Recs)).

t_wrong_secret(_) ->
    {ok, Good} = ?NIF:connector_new(ec_test_util:connector_conf(confluent)),
    ?assertEqual(ok, ?NIF:connector_health(Good)),
    {ok, Bad} = ?NIF:connector_new(ec_test_util:connector_conf(confluent, <<"wrong-secret">>)),
    {error, #{message := Msg}} = ?NIF:connector_health(Bad),
    ct:pal("wrong secret: ~s", [Msg]),
    ?assertMatch({match, _}, re:run(Msg, "Authentication failed|SASL authentication error")).

t_config_errors_name_field(_) ->
    C = ec_test_util:connector_conf(plain),
    E = fun(Conn, Act) -> {error, #{message := M}} = ?NIF:action_new(Conn, Act), M end,
    ?assertMatch({match, _}, re:run(E(C#{<<"bootstrap_hosts">> => <<>>}, action(<<"t">>, #{})), "^bootstrap_hosts:")),
    ?assertMatch({match, _}, re:run(E(C, action(<<"t">>, #{<<"compression">> => <<"brotli">>})), "^parameters.compression:")),
    ?assertMatch({match, _}, re:run(E(C, action(<<"t">>, #{<<"partition_strategy">> => <<"key_dispatch">>,
                                                            <<"message">> => #{<<"key">> => <<>>}})),
                                    "key cannot be empty")),
    ?assertMatch({match, _}, re:run(E(C, action(<<"t">>, #{<<"kafka_headers">> => <<"a${b}">>})), "single placeholder")),
    ?assertMatch({match, _}, re:run(E(C, action(<<"t">>, #{<<"max_batch_bytes">> => <<"10Kb">>})), "^parameters.max_batch_bytes:")),
    ?assertMatch({match, _}, re:run(E(C#{<<"socket_opts">> => #{<<"tcp_keepalive">> => <<"1,2">>}}, action(<<"t">>, #{})),
                                    "^socket_opts.tcp_keepalive:")),
    ?assertMatch({match, _}, re:run(E(ec_test_util:connector_conf(confluent), action(<<"t">>, #{<<"message">> => #{<<"timestamp">> => <<"1">>}})),
                                    "^parameters.message.timestamp:")).

t_render_failures_counted(_) ->
    A = new_action(plain, <<"dyn-${payload.missing}">>, #{}),
    {error, #{message := M}} = ?NIF:action_send(A, output(<<"c">>, <<"{}">>), false),
    ?assertMatch({match, _}, re:run(M, "failed_to_render_topic")),
    B = new_action(plain, <<"t">>, #{<<"kafka_headers">> => <<"${h}">>}),
    {error, #{message := M2}} = ?NIF:action_send(B, #{<<"h">> => <<"not json">>}, false),
    ?assertMatch({match, _}, re:run(M2, "bad_kafka_headers")),
    ?assertMatch(#{matched := 1, failed := 1, success := 0}, ?NIF:action_metrics(A)),
    ok = ?NIF:action_destroy(A),
    ok = ?NIF:action_destroy(B).

t_sync_reply_after_ack(_) ->
    Topic = ec_test_util:unique_topic(<<"sink-sync">>),
    ok = ec_test_util:create_topic(Topic, 3),
    A = new_action(confluent, Topic, #{<<"query_mode">> => <<"sync">>, <<"required_acks">> => <<"all_isr">>}),
    {P, Off} = send_sync(A, output(<<"k">>, <<"{}">>)),
    ?assert(P >= 0 andalso P < 3),
    ?assertEqual(0, Off),
    ok = ?NIF:action_destroy(A).

unreachable() ->
    #{<<"type">> => <<"kafka_producer">>, <<"bootstrap_hosts">> => <<"127.0.0.1:1">>,
      <<"metadata_request_timeout">> => <<"200ms">>}.

%% no broker: the record stays buffered and the sync caller times out
t_sync_timeout_broker_unreachable(_) ->
    {ok, A} = ?NIF:action_new(unreachable(), action(<<"t">>, #{<<"query_mode">> => <<"sync">>})),
    {ok, Ref} = ?NIF:action_send(A, output(<<"k">>, <<"{}">>), true),
    Got = receive {ec_action_reply, Ref, R} -> R; {ec_action_reply, Ref, R, _, _} -> R after 1500 -> timeout end,
    ?assertEqual(timeout, Got),
    ?assertMatch(#{matched := 1, queuing := 1, success := 0, failed := 0}, ?NIF:action_metrics(A)),
    ok = ?NIF:action_destroy(A),
    %% stopping answers the waiting caller
    receive {ec_action_reply, Ref, {error, <<"resource_stopped">>}} -> ok after 5000 -> error(no_stop_reply) end.

vlen(N) -> vlen((N bsl 1), 1).
vlen(Z, B) when Z >= 128 -> vlen(Z bsr 7, B + 1);
vlen(_, B) -> B.

%% sink-behaviour.md §5 estimate, no headers
estimate(KeyLen, ValLen) ->
    H = vlen(0),
    F = H + 7 + vlen(KeyLen) + KeyLen + vlen(ValLen) + ValLen,
    F + vlen(H + F).

t_buffer_limit_drops_oldest_exactly(_) ->
    Value = binary:copy(<<"x">>, 100),
    S = estimate(3, 100),
    Limit = 10 * S,
    {ok, A} = ?NIF:action_new(unreachable(), action(<<"t">>, #{
        <<"message">> => #{<<"key">> => <<"${clientid}">>, <<"value">> => <<"${payload}">>},
        <<"buffer">> => #{<<"per_partition_limit">> => Limit}})),
    Refs = [begin {ok, R} = ?NIF:action_send(A, output(<<"abc">>, Value), true), R end
            || _ <- lists:seq(1, 25)],
    %% the 15 oldest are dropped, each answered buffer_overflow, in order
    Dropped = [R || R <- Refs, receive {ec_action_reply, R, {error, <<"buffer_overflow">>}} -> true after 0 -> false end],
    ?assertEqual(lists:sublist(Refs, 15), Dropped),
    ?assertMatch(#{matched := 25, dropped := 15, 'dropped.queue_full' := 15, queuing := 10,
                   queuing_bytes := Limit}, ?NIF:action_metrics(A)),
    ok = ?NIF:action_destroy(A).

%% Kafka unreachable since start: records are accepted and buffered, and get
%% their partition (key_dispatch) once metadata finally arrives. The bootstrap
%% address is a proxy that refuses connections until we open it.
t_buffered_until_kafka_reachable(_) ->
    Topic = ec_test_util:unique_topic(<<"sink-late">>),
    ok = ec_test_util:create_topic(Topic, 3),
    Port = ec_test_util:free_port(),
    Conn = #{<<"type">> => <<"kafka_producer">>,
             <<"bootstrap_hosts">> => iolist_to_binary(["127.0.0.1:", integer_to_list(Port)]),
             <<"metadata_request_timeout">> => <<"500ms">>},
    {ok, A} = ?NIF:action_new(Conn, action(Topic, #{<<"partition_strategy">> => <<"key_dispatch">>})),
    Refs = [begin {ok, R} = ?NIF:action_send(A, output(K, <<"{}">>), true), R end
            || K <- [<<"a">>, <<"abc">>, <<"device-42">>]],
    receive {ec_action_reply, _, _} -> error(early_reply); {ec_action_reply, _, _, _, _} -> error(early_reply)
    after 1500 -> ok end,
    ?assertMatch(#{matched := 3, queuing := 3, success := 0}, ?NIF:action_metrics(A)),
    Proxy = start_proxy(Port, ec_test_util:kafka_port()),
    Ps = [receive {ec_action_reply, R, ok, P, _} -> P after 30000 -> error(no_reply) end || R <- Refs],
    ?assertEqual([2, 0, 0], Ps),
    ?assertMatch(#{success := 3, queuing := 0, inflight := 0}, ?NIF:action_metrics(A)),
    ok = ?NIF:action_destroy(A),
    exit(Proxy, kill).

start_proxy(Port, Target) ->
    Self = self(),
    Pid = spawn(fun() ->
                        {ok, L} = gen_tcp:listen(Port, [binary, {ip, {127, 0, 0, 1}}, {reuseaddr, true},
                                                        {active, false}]),
                        Self ! listening,
                        accept_loop(L, Target)
                end),
    receive listening -> Pid after 5000 -> error(proxy_not_listening) end.

accept_loop(L, Target) ->
    {ok, C} = gen_tcp:accept(L),
    {ok, B} = gen_tcp:connect({127, 0, 0, 1}, Target, [binary, {active, false}]),
    P1 = spawn(fun() -> relay(C, B) end),
    P2 = spawn(fun() -> relay(B, C) end),
    ok = gen_tcp:controlling_process(C, P1),
    ok = gen_tcp:controlling_process(B, P2),
    accept_loop(L, Target).

relay(From, To) ->
    case gen_tcp:recv(From, 0) of
        {ok, Data} -> ok = gen_tcp:send(To, Data), relay(From, To);
        {error, _} -> gen_tcp:close(To)
    end.

%% The fixed topic is deleted and created again with one partition instead of
%% four (sink-behaviour.md §4.1): after the next partition-count refresh every
%% record lands on the partition left and is acknowledged by the new topic.
t_topic_recreated_smaller(_) ->
    Topic = ec_test_util:unique_topic(<<"sink-shrink">>),
    ok = ec_test_util:create_topic(Topic, 4),
    A = new_action(plain, Topic, #{<<"partition_strategy">> => <<"random">>,
                                   <<"partition_count_refresh_interval">> => <<"1s">>}),
    Before = [element(1, send_sync(A, output(integer_to_binary(I), <<"{}">>))) || I <- lists:seq(1, 40)],
    ?assertEqual([0, 1, 2, 3], lists:usort(Before)),
    ok = ec_test_util:delete_topic(Topic),
    %% the deletion is asynchronous: create again once the broker lists it no more
    true = ec_test_util:wait_until(fun() -> not lists:member(Topic, ec_test_util:topics()) end, 30000),
    ok = ec_test_util:create_topic(Topic, 1),
    timer:sleep(2500), %% past a refresh
    After = [element(1, send_sync(A, output(integer_to_binary(I), <<"{}">>))) || I <- lists:seq(1, 40)],
    ?assertEqual([0], lists:usort(After)),
    ?assertEqual(40, length(ec_test_util:consume(Topic, 40))),
    ?assertMatch(#{success := 80, failed := 0, queuing := 0, inflight := 0}, ?NIF:action_metrics(A)),
    ok = ?NIF:action_destroy(A).

%% @doc Connector and action statuses (sink-behaviour.md §9): the pure rules,
%% and a connector process against the real broker: connected, disconnected
%% with the reason when the start fails (unreachable, wrong secret), never
%% disconnected after a successful start, actions installed once connected,
%% a missing fixed topic, and recovery when it appears.
-module(emqx_confluent_status_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-compile([export_all, nowarn_export_all]).

-define(S, emqx_confluent_status).
-define(C, emqx_confluent_connector).
-define(NIF, emqx_confluent_nif).

all() ->
    [t_rules, t_connected, t_unreachable_disconnected, t_wrong_secret_disconnected,
     t_never_disconnected_after_start, t_action_missing_topic_then_created,
     t_action_not_installed_while_connector_down, t_auto_topic_creation_allowed,
     t_bad_config_refused, t_calls_answered_during_slow_check, t_action_own_interval,
     t_action_installed_when_connector_connects].

t_rules(_) ->
    E = {error, <<"boom">>},
    ?assertEqual({connecting, undefined}, ?S:connector(false, pending)),
    ?assertEqual({connected, undefined}, ?S:connector(false, ok)),
    ?assertEqual({disconnected, <<"boom">>}, ?S:connector(false, E)),
    ?assertEqual({connecting, <<"boom">>}, ?S:connector(true, E)),
    ?assertEqual({disconnected, <<"resource_health_check_timed_out">>}, ?S:connector(true, timeout)),
    ?assertEqual({disconnected, <<"Resource not operational">>}, ?S:action(disconnected, installed, ok)),
    ?assertEqual({connecting, <<"resource_is_connecting">>}, ?S:action(connecting, installed, ok)),
    ?assertEqual({disconnected, <<"Unknown topic or partition: t">>},
                 ?S:action(connected, {install_failed, <<"Unknown topic or partition: t">>}, pending)),
    ?assertEqual({connecting, undefined}, ?S:action(connected, installed, pending)),
    ?assertEqual({connected, undefined}, ?S:action(connected, installed, ok)),
    ?assertEqual({connecting, <<"boom">>}, ?S:action(connected, installed, E)).

fast(Conf) ->
    Conf#{<<"resource_opts">> => #{<<"health_check_interval">> => <<"200ms">>,
                                   <<"health_check_timeout">> => <<"10s">>}}.

wait_status(Fun, Want) ->
    ec_test_util:wait_until(fun() -> maps:get(status, Fun()) =:= Want end, 20000),
    Fun().

t_connected(_) ->
    {ok, C} = ?C:start_link(<<"c1">>, fast(ec_test_util:connector_conf(confluent))),
    ?assertEqual(#{status => connected}, wait_status(fun() -> ?C:status(C) end, connected)),
    ok = ?C:stop(C).

t_unreachable_disconnected(_) ->
    Conf = fast(#{<<"type">> => <<"kafka_producer">>, <<"bootstrap_hosts">> => <<"127.0.0.1:1">>,
                  <<"metadata_request_timeout">> => <<"300ms">>}),
    {ok, C} = ?C:start_link(<<"c2">>, Conf),
    #{status := disconnected, status_reason := R} = wait_status(fun() -> ?C:status(C) end, disconnected),
    ct:pal("unreachable: ~s", [R]),
    ?assertMatch({match, _}, re:run(R, "Connection refused|transport failure|timed out", [caseless])),
    ok = ?C:stop(C).

t_wrong_secret_disconnected(_) ->
    {ok, C} = ?C:start_link(<<"c3">>, fast(ec_test_util:connector_conf(confluent, <<"nope">>))),
    #{status := disconnected, status_reason := R} = wait_status(fun() -> ?C:status(C) end, disconnected),
    ?assertMatch({match, _}, re:run(R, "SASL authentication error|Authentication failed")),
    ok = ?C:stop(C).

%% with health_check_topic: the topic disappears after a successful start ->
%% connecting with the reason, not disconnected
t_never_disconnected_after_start(_) ->
    Topic = ec_test_util:unique_topic(<<"hc">>),
    ok = ec_test_util:create_topic(Topic, 1),
    Conf = fast((ec_test_util:connector_conf(plain))#{<<"health_check_topic">> => Topic}),
    {ok, C} = ?C:start_link(<<"c4">>, Conf),
    _ = wait_status(fun() -> ?C:status(C) end, connected),
    ok = ec_test_util:delete_topic(Topic),
    #{status := connecting, status_reason := R} = wait_status(fun() -> ?C:status(C) end, connecting),
    ?assertMatch({match, _}, re:run(R, "Unknown topic")),
    ok = ?C:stop(C).

t_action_missing_topic_then_created(_) ->
    Topic = ec_test_util:unique_topic(<<"act">>),
    {ok, C} = ?C:start_link(<<"c5">>, fast(ec_test_util:connector_conf(plain))),
    _ = wait_status(fun() -> ?C:status(C) end, connected),
    %% the install is retried every health_check_interval of the action's
    ok = ?C:add_action(C, <<"a1">>, #{<<"parameters">> => #{<<"topic">> => Topic},
                                      <<"resource_opts">> => #{<<"health_check_interval">> => <<"200ms">>}}),
    Want = <<"Unknown topic or partition: ", Topic/binary>>,
    ?assertEqual(#{status => disconnected, status_reason => Want}, ?C:action_status(C, <<"a1">>)),
    ?assertEqual({error, not_installed}, ?C:action(C, <<"a1">>)),
    ok = ec_test_util:create_topic(Topic, 2),
    ?assertEqual(#{status => connected}, wait_status(fun() -> ?C:action_status(C, <<"a1">>) end, connected)),
    {ok, A} = ?C:action(C, <<"a1">>),
    {ok, Ref} = ?NIF:action_send(A, #{<<"clientid">> => <<"x">>, <<"timestamp">> => 1}, true),
    receive {ec_action_reply, Ref, ok, _, _} -> ok after 20000 -> error(no_ack) end,
    ok = ?C:stop(C).

t_action_not_installed_while_connector_down(_) ->
    Conf = fast(#{<<"type">> => <<"kafka_producer">>, <<"bootstrap_hosts">> => <<"127.0.0.1:1">>,
                  <<"metadata_request_timeout">> => <<"300ms">>}),
    {ok, C} = ?C:start_link(<<"c6">>, Conf),
    _ = wait_status(fun() -> ?C:status(C) end, disconnected),
    ok = ?C:add_action(C, <<"a">>, #{<<"parameters">> => #{<<"topic">> => <<"t">>}}),
    ?assertEqual(#{status => disconnected, status_reason => <<"Resource not operational">>},
                 ?C:action_status(C, <<"a">>)),
    ?assertEqual(#{status => disconnected, status_reason => <<"Not installed">>},
                 ?C:action_status(C, <<"nope">>)),
    ok = ?C:stop(C).

%% EMQX's allow_auto_topic_creation (default false, checked above): when true,
%% a broker that allows it creates the missing topic and the action connects
t_auto_topic_creation_allowed(_) ->
    Topic = ec_test_util:unique_topic(<<"auto">>),
    Conf = fast((ec_test_util:connector_conf(plain))#{<<"allow_auto_topic_creation">> => true}),
    {ok, C} = ?C:start_link(<<"c8">>, Conf),
    _ = wait_status(fun() -> ?C:status(C) end, connected),
    ok = ?C:add_action(C, <<"a">>, #{<<"parameters">> => #{<<"topic">> => Topic}}),
    ?assertEqual(#{status => connected}, wait_status(fun() -> ?C:action_status(C, <<"a">>) end, connected)),
    ok = ?C:stop(C).

t_bad_config_refused(_) ->
    process_flag(trap_exit, true),
    {error, {config, #{message := M}}} =
        ?C:start_link(<<"c7">>, #{<<"type">> => <<"kafka_producer">>, <<"bootstrap_hosts">> => <<>>}),
    ?assertMatch({match, _}, re:run(M, "^bootstrap_hosts:")).

%% A round of checks that waits on Kafka holds up no call: a "broker" that
%% accepts connections and never answers keeps the first check waiting for
%% metadata_request_timeout (3 s) while the calls are answered.
t_calls_answered_during_slow_check(_) ->
    {Port, Hole} = blackhole(),
    Conf = fast(#{<<"type">> => <<"kafka_producer">>,
                  <<"bootstrap_hosts">> => iolist_to_binary(["127.0.0.1:", integer_to_list(Port)]),
                  <<"metadata_request_timeout">> => <<"3s">>}),
    {ok, C} = ?C:start_link(<<"c9">>, Conf),
    timer:sleep(200),
    Act = #{<<"parameters">> => #{<<"topic">> => <<"t">>}},
    {T, _} = timer:tc(fun() ->
                              ?assertEqual(#{status => connecting}, ?C:status(C)),
                              ok = ?C:add_action(C, <<"a">>, Act),
                              ?assertEqual(#{status => connecting, status_reason => <<"resource_is_connecting">>},
                                           ?C:action_status(C, <<"a">>)),
                              ok = ?C:remove_action(C, <<"a">>)
                      end),
    ct:pal("four calls during the check: ~p us", [T]),
    ?assert(T < 1000000),
    %% the check was still waiting all along; then it fails as it should
    ?assertEqual(#{status => connecting}, ?C:status(C)),
    #{status := disconnected, status_reason := R} = wait_status(fun() -> ?C:status(C) end, disconnected),
    ct:pal("the check's answer: ~s", [R]),
    ok = ?C:stop(C),
    exit(Hole, kill).

%% a listener on 127.0.0.1 that accepts connections and never reads or answers
blackhole() ->
    Self = self(),
    Pid = spawn(fun() ->
                        {ok, L} = gen_tcp:listen(0, [binary, {ip, {127, 0, 0, 1}}, {active, false}]),
                        {ok, Port} = inet:port(L),
                        Self ! {blackhole, Port},
                        hole(L, [])
                end),
    receive {blackhole, P} -> {P, Pid} after 5000 -> error(no_blackhole) end.

hole(L, Held) ->
    {ok, S} = gen_tcp:accept(L),
    hole(L, [S | Held]).

%% Each action is checked, and its install retried, every
%% health_check_interval of its own (as EMQX checks its channels), not the
%% connector's: with the connector's at one hour, an action whose topic
%% appears later connects within its own 200 ms; one left at the default
%% (15 s) has not yet.
t_action_own_interval(_) ->
    Topic = ec_test_util:unique_topic(<<"own">>),
    Conf = (ec_test_util:connector_conf(plain))#{<<"resource_opts">> => #{<<"health_check_interval">> => <<"1h">>}},
    {ok, C} = ?C:start_link(<<"c10">>, Conf),
    _ = wait_status(fun() -> ?C:status(C) end, connected),
    ok = ?C:add_action(C, <<"fast">>, #{<<"parameters">> => #{<<"topic">> => Topic},
                                        <<"resource_opts">> => #{<<"health_check_interval">> => <<"200ms">>}}),
    ok = ?C:add_action(C, <<"slow">>, #{<<"parameters">> => #{<<"topic">> => Topic}}),
    Missing = #{status => disconnected, status_reason => <<"Unknown topic or partition: ", Topic/binary>>},
    ?assertEqual(Missing, ?C:action_status(C, <<"fast">>)),
    ok = ec_test_util:create_topic(Topic, 1),
    ?assertEqual(#{status => connected}, wait_status(fun() -> ?C:action_status(C, <<"fast">>) end, connected)),
    ?assertEqual(Missing, ?C:action_status(C, <<"slow">>)),
    ok = ?C:stop(C).

%% An action added while Kafka is unreachable is installed as soon as the
%% connector connects, not one action interval (here an hour) later.
t_action_installed_when_connector_connects(_) ->
    Topic = ec_test_util:unique_topic(<<"up">>),
    ok = ec_test_util:create_topic(Topic, 1),
    Port = ec_test_util:free_port(), %% refused until the proxy listens there
    Conf = #{<<"type">> => <<"kafka_producer">>,
             <<"bootstrap_hosts">> => iolist_to_binary(["127.0.0.1:", integer_to_list(Port)]),
             <<"metadata_request_timeout">> => <<"300ms">>,
             <<"resource_opts">> => #{<<"health_check_interval">> => <<"300ms">>}},
    {ok, C} = ?C:start_link(<<"c11">>, Conf),
    _ = wait_status(fun() -> ?C:status(C) end, disconnected),
    ok = ?C:add_action(C, <<"a">>, #{<<"parameters">> => #{<<"topic">> => Topic},
                                     <<"resource_opts">> => #{<<"health_check_interval">> => <<"1h">>}}),
    ?assertEqual(#{status => disconnected, status_reason => <<"Resource not operational">>},
                 ?C:action_status(C, <<"a">>)),
    Proxy = emqx_confluent_sink_SUITE:start_proxy(Port, ec_test_util:kafka_port()),
    ?assertEqual(#{status => connected}, wait_status(fun() -> ?C:action_status(C, <<"a">>) end, connected)),
    ok = ?C:stop(C),
    exit(Proxy, kill).

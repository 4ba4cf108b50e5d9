%% @doc The NIF library itself: load and reload (upgrade), resource life
%% cycle (owner death, garbage collection), the JSON codec through the term
%% conversion, and that big inputs do not stall a normal scheduler.
-module(emqx_confluent_nif_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").
-include_lib("proper/include/proper.hrl").

-compile([export_all, nowarn_export_all]).

-define(NIF, emqx_confluent_nif).

all() ->
    [t_load, t_reload_upgrade, t_owner_death_closes_producer, t_gc_destroys_producer,
     t_close_idempotent, t_bad_arguments, t_json_decode_values, t_json_decode_errors,
     t_json_encode_emqx_format, t_json_roundtrip_property, t_large_decode_no_long_schedule].

%% a producer that never needs a reachable broker
dummy_props() -> [{<<"bootstrap.servers">>, <<"127.0.0.1:1">>}].

t_load(_) ->
    Info = ?NIF:nif_info(),
    ?assertMatch(#{version := <<"0.1.0">>}, Info),
    ?assert(maps:get(loads, Info) >= 1),
    %% the stubs are replaced: calling one does not raise nif_error
    ?assertMatch({ok, _}, ?NIF:json_decode(<<"1">>)).

t_reload_upgrade(_) ->
    #{upgrades := U0, unloads := D0} = ?NIF:nif_info(),
    {ok, P} = ?NIF:producer_new(dummy_props()),
    %% make the current code old, load a new instance of the module: the
    %% library's upgrade callback runs and takes over the resource types
    _ = code:soft_purge(?NIF),
    {module, ?NIF} = code:load_file(?NIF),
    #{upgrades := U1} = ?NIF:nif_info(),
    ?assertEqual(U0 + 1, U1),
    %% resources made by the old instance still work with the new one
    ?assertMatch({ok, _}, ?NIF:producer_send(P, <<"t">>, <<"k">>, <<"v">>, [], 0)),
    ?assertEqual(ok, ?NIF:producer_close(P)),
    ?assertMatch({ok, #{<<"a">> := 1}}, ?NIF:json_decode(<<"{\"a\":1}">>)),
    %% purging the old instance unloads it
    _ = code:purge(?NIF),
    #{unloads := D1} = ?NIF:nif_info(),
    ?assertEqual(D0 + 1, D1),
    ?assertMatch({ok, [1]}, ?NIF:json_decode(<<"[1]">>)).

t_owner_death_closes_producer(_) ->
    #{live_producers := LP0, live_resources := LR0} = ?NIF:nif_info(),
    Self = self(),
    Owner = spawn(fun() ->
                          {ok, P} = ?NIF:producer_new(dummy_props()),
                          Self ! {producer, P},
                          receive stop -> ok end
                  end),
    P = receive {producer, R} -> R after 10000 -> error(no_producer) end,
    ?assertEqual(LP0 + 1, maps:get(live_producers, ?NIF:nif_info())),
    Ref = monitor(process, Owner),
    Owner ! stop,
    receive {'DOWN', Ref, process, Owner, _} -> ok end,
    %% the down callback destroys the librdkafka handle on a C thread
    ec_test_util:wait_until(
      fun() -> maps:get(live_producers, ?NIF:nif_info()) =:= LP0 end, 10000),
    %% we still hold the resource; it answers closed
    ?assertEqual({error, closed}, ?NIF:producer_send(P, <<"t">>, undefined, <<"v">>, [], 0)),
    ?assertEqual({error, closed}, ?NIF:producer_ping(P, 100)),
    ?assertEqual(LR0 + 1, maps:get(live_resources, ?NIF:nif_info())),
    ok.

t_gc_destroys_producer(_) ->
    #{live_producers := LP0} = ?NIF:nif_info(),
    Self = self(),
    Holder = spawn(fun() ->
                           {ok, _P} = ?NIF:producer_new(dummy_props()),
                           Self ! created,
                           receive drop -> ok end,
                           %% forget the resource while staying alive
                           erlang:garbage_collect(),
                           Self ! dropped,
                           receive stop -> ok end
                   end),
    receive created -> ok after 10000 -> error(not_created) end,
    ?assertEqual(LP0 + 1, maps:get(live_producers, ?NIF:nif_info())),
    Holder ! drop,
    receive dropped -> ok after 10000 -> error(not_dropped) end,
    ec_test_util:wait_until(
      fun() -> maps:get(live_producers, ?NIF:nif_info()) =:= LP0 end, 10000),
    Holder ! stop.

t_close_idempotent(_) ->
    #{live_producers := LP0} = ?NIF:nif_info(),
    {ok, P} = ?NIF:producer_new(dummy_props()),
    ?assertEqual(ok, ?NIF:producer_close(P)),
    ?assertEqual(LP0, maps:get(live_producers, ?NIF:nif_info())),
    ?assertEqual(ok, ?NIF:producer_close(P)),
    ?assertEqual({error, closed}, ?NIF:producer_send(P, <<"t">>, <<"k">>, <<"v">>, [], 0)).

t_bad_arguments(_) ->
    ?assertError(badarg, ?NIF:json_decode(not_a_binary)),
    ?assertError(badarg, ?NIF:producer_new(not_a_list)),
    ?assertError(badarg, ?NIF:producer_new([{<<"a">>}])),
    %% an unknown librdkafka property is an error naming it, not a crash
    {error, #{reason := invalid, message := Msg}} =
        ?NIF:producer_new([{<<"no.such.property">>, <<"1">>}]),
    ?assertMatch({match, _}, re:run(Msg, "no.such.property")),
    {ok, P} = ?NIF:producer_new(dummy_props()),
    ?assertError(badarg, ?NIF:producer_send(P, <<>>, <<"k">>, <<"v">>, [], 0)),
    ?assertError(badarg, ?NIF:producer_send(P, binary:copy(<<"t">>, 250), <<"k">>, <<"v">>, [], 0)),
    ?assertError(badarg, ?NIF:producer_send(P, <<"t">>, <<"k">>, <<"v">>, [bad], 0)),
    ?assertError(badarg, ?NIF:producer_send(make_ref(), <<"t">>, <<"k">>, <<"v">>, [], 0)),
    ok = ?NIF:producer_close(P).

t_json_decode_values(_) ->
    ?assertEqual({ok, #{<<"msg">> => <<"Hello Confluent">>, <<"n">> => null,
                        <<"l">> => [1, -2.5, true, false, #{}]}},
                 ?NIF:json_decode(<<"{\"msg\":\"Hello Confluent\",\"n\":null,"
                                    "\"l\":[1,-2.5,true,false,{}]}">>)),
    ?assertEqual({ok, 9223372036854775807}, ?NIF:json_decode(<<"9223372036854775807">>)),
    ?assertEqual({ok, <<"é😀"/utf8>>}, ?NIF:json_decode(<<"\"\\u00e9\\ud83d\\ude00\"">>)).

t_json_decode_errors(_) ->
    {error, E} = ?NIF:json_decode(<<"{\"a\":1,\n \"b\" 2}">>),
    ?assertMatch(#{reason := parse, line := 2, column := 6, position := 13}, E),
    ?assertMatch({match, _}, re:run(maps:get(message, E), "expected ':'")),
    ?assertMatch({error, #{reason := parse}}, ?NIF:json_decode(<<"hello">>)),
    Deep = iolist_to_binary([lists:duplicate(600, $[), lists:duplicate(600, $])]),
    ?assertMatch({error, #{reason := limit}}, ?NIF:json_decode(Deep)).

t_json_encode_emqx_format(_) ->
    ?assertEqual({ok, <<"{\"v\":0.30000000000000004,\"t\":1500.0,\"u\":\"undefined\"}">>},
                 ?NIF:json_encode(#{<<"v">> => 0.1 + 0.2, u => undefined, <<"t">> => 1500.0})),
    %% atom keys sort below binary keys (EMQX small-map order, descending)
    ?assertEqual({ok, <<"{\"zzz\":1,\"username\":\"undefined\",\"clientid\":\"c1\"}">>},
                 ?NIF:json_encode(#{clientid => <<"c1">>, username => undefined, <<"zzz">> => 1})),
    ?assertEqual({ok, <<"[\"message.publish\",null,true]">>},
                 ?NIF:json_encode(['message.publish', null, true])),
    ?assertMatch({error, #{reason := type}}, ?NIF:json_encode({a, tuple})).

%% PropEr: any JSON value survives encode -> decode unchanged
json_value() ->
    ?SIZED(S, json_value(S)).
json_value(0) ->
    oneof([integer(-(1 bsl 63), (1 bsl 63) - 1), float(), utf8(), true, false, null]);
json_value(S) ->
    frequency([{3, json_value(0)},
               {1, ?LAZY(list(json_value(S div 3)))},
               {1, ?LAZY(?LET(Pairs, list({utf8(), json_value(S div 3)}), maps:from_list(Pairs)))}]).

prop_json_roundtrip() ->
    ?FORALL(V, json_value(),
            begin
                {ok, Bin} = ?NIF:json_encode(V),
                {ok, Back} = ?NIF:json_decode(Bin),
                Back =:= normalise(V)
            end).

%% -0.0 is written as 0.0 (jiffy's UNIQUE_ZERO)
normalise(F) when is_float(F), F == 0.0 -> 0.0;
normalise(L) when is_list(L) -> [normalise(X) || X <- L];
normalise(M) when is_map(M) -> maps:map(fun(_, X) -> normalise(X) end, M);
normalise(X) -> X.

t_json_roundtrip_property(_) ->
    ?assert(proper:quickcheck(prop_json_roundtrip(), [{numtests, 500}, {to_file, user}])).

t_large_decode_no_long_schedule(_) ->
    %% ~24 MB of JSON: far more than 1 ms of work; it must move to a dirty scheduler
    Item = <<"{\"temp\":21.5,\"id\":\"sensor-000001\",\"ok\":true},">>,
    Big = iolist_to_binary([$[, binary:copy(Item, 500000), <<"0]">>]),
    erlang:system_monitor(self(), [{long_schedule, 50}]),
    T0 = erlang:monotonic_time(millisecond),
    {ok, L} = ?NIF:json_decode(Big),
    Elapsed = erlang:monotonic_time(millisecond) - T0,
    erlang:system_monitor(undefined),
    ?assertEqual(500001, length(L)),
    Self = self(),
    Long = receive {monitor, Self, long_schedule, Info} -> Info after 100 -> none end,
    ct:pal("decode took ~p ms; long_schedule: ~p", [Elapsed, Long]),
    ?assert(Elapsed > 50), %% the test is meaningful only if the work is long
    ?assertEqual(none, Long).

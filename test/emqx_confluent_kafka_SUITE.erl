%% @doc The Kafka loop through the NIF against the real broker started by
%% ec_services_cth: produce over SASL_SSL/PLAIN (how Confluent Cloud
%% authenticates) and read the record back with a consumer.
-module(emqx_confluent_kafka_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-compile([export_all, nowarn_export_all]).

-define(NIF, emqx_confluent_nif).

all() -> [t_produce_sasl_ssl_roundtrip, t_null_key_and_plaintext, t_wrong_secret].

t_produce_sasl_ssl_roundtrip(_) ->
    Topic = ec_test_util:unique_topic(<<"found-sasl">>),
    {ok, P} = ?NIF:producer_new([{<<"acks">>, <<"all">>} | ec_test_util:sasl_ssl_props()]),
    ?assertEqual(ok, ?NIF:producer_ping(P, 15000)),
    Ts = erlang:system_time(millisecond) - 5000,
    Value = <<"{\"msg\":\"Hello Confluent\"}">>,
    {ok, Ref} = ?NIF:producer_send(P, Topic, <<"device-1">>, Value,
                                   [{<<"h1">>, <<"v1">>}, {<<"source">>, <<"emqx">>}], Ts),
    receive
        {ec_delivery, Ref, ok, Partition, Offset} ->
            ?assertEqual(0, Partition),
            ?assertEqual(0, Offset)
    after 30000 -> error(no_delivery_report)
    end,
    ok = ?NIF:producer_close(P),
    [Rec] = ec_test_util:consume(Topic, 1),
    ?assertMatch(#{<<"key">> := <<"device-1">>, <<"payload">> := Value,
                   <<"headers">> := [<<"h1">>, <<"v1">>, <<"source">>, <<"emqx">>],
                   <<"ts">> := Ts, <<"tstype">> := <<"create">>}, Rec).

t_null_key_and_plaintext(_) ->
    Topic = ec_test_util:unique_topic(<<"found-plain">>),
    {ok, P} = ?NIF:producer_new(ec_test_util:plaintext_props()),
    Refs = [begin
                {ok, R} = ?NIF:producer_send(P, Topic, undefined, integer_to_binary(I), [], 0),
                R
            end || I <- lists:seq(1, 50)],
    [receive {ec_delivery, R, ok, 0, _} -> ok after 30000 -> error({no_report, R}) end
     || R <- Refs],
    ok = ?NIF:producer_close(P),
    Recs = ec_test_util:consume(Topic, 50),
    ?assertEqual([integer_to_binary(I) || I <- lists:seq(1, 50)],
                 [maps:get(<<"payload">>, R) || R <- Recs]),
    ?assert(lists:all(fun(R) -> maps:get(<<"key">>, R) =:= null end, Recs)).

t_wrong_secret(_) ->
    Topic = ec_test_util:unique_topic(<<"found-badauth">>),
    {ok, P} = ?NIF:producer_new([{<<"message.timeout.ms">>, <<"3000">>}
                                 | ec_test_util:sasl_ssl_props(<<"not-the-secret">>)]),
    {error, #{reason := kafka, message := Why}} = ?NIF:producer_ping(P, 3000),
    %% the reason names the real cause, not just a timeout
    ?assertMatch({match, _}, re:run(Why, "SASL authentication error|Authentication failed")),
    {ok, Ref} = ?NIF:producer_send(P, Topic, <<"k">>, <<"v">>, [], 0),
    receive
        {ec_delivery, Ref, {error, Msg}} -> ct:pal("delivery error: ~s", [Msg])
    after 20000 -> error(no_failure_report)
    end,
    ok = ?NIF:producer_close(P).

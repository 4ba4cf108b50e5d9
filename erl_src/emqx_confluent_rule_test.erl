%% @doc POST /api/v5/rule_test (rest-api.md §4): EMQX's request shape, an
%% `event_type' and a partial context completed with EMQX's example values,
%% evaluated by the same C tester as priv/bin/rule-test (design.md §3.2).
-module(emqx_confluent_rule_test).

-export([rest/1, context/1]).

%% @doc {Status, ExtraHeaders, Body} for the API.
rest(#{<<"sql">> := Sql} = Body) when is_binary(Sql) ->
    case context(maps:get(<<"context">>, Body, #{})) of
        {ok, Ctx} ->
            {ok, Req} = emqx_confluent_nif:json_encode(#{<<"sql">> => Sql, <<"context">> => Ctx}),
            {ok, Answer} = emqx_confluent_nif:json_decode(emqx_confluent_nif:rule_test(Req)),
            case Answer of
                #{<<"matched">> := true, <<"output">> := Out} -> json(200, Out);
                #{<<"matched">> := false} -> json(412, #{<<"code">> => <<"NOT_MATCH">>, <<"message">> => <<"SQL Not Match">>});
                #{<<"error">> := E} -> json(400, #{<<"code">> => <<"BAD_REQUEST">>, <<"message">> => E})
            end;
        {error, M} ->
            json(400, #{<<"code">> => <<"BAD_REQUEST">>, <<"message">> => M})
    end;
rest(_) ->
    json(400, #{<<"code">> => <<"BAD_REQUEST">>, <<"message">> => <<"sql: required, a string">>}).

json(Status, Term) ->
    {ok, Bin} = emqx_confluent_nif:json_encode(Term),
    {Status, [], Bin}.

%% @doc The complete column map for a test context: EMQX's example columns of
%% the event, overridden by what the request gives.
-spec context(term()) -> {ok, map()} | {error, binary()}.
context(Ctx) when is_map(Ctx) ->
    Type = maps:get(<<"event_type">>, Ctx, <<"message_publish">>),
    case is_binary(Type) andalso event_name(Type) of
        {ok, Event} ->
            Given = maps:remove(<<"event_type">>, Ctx),
            {ok, maps:merge(example(Event), Given#{<<"event">> => Event})};
        _ ->
            {error, <<"context.event_type: unknown event type">>}
    end;
context(_) ->
    {error, <<"context: expected an object">>}.

%% message_publish -> message.publish, client_check_authz_complete -> client.check_authz_complete
event_name(Type) ->
    case binary:split(Type, <<"_">>) of
        [A, B] when A =/= <<>>, B =/= <<>> -> {ok, <<A/binary, ".", B/binary>>};
        _ -> error
    end.

now_ms() -> erlang:system_time(millisecond).

example(Event) ->
    Now = now_ms(),
    Common = #{<<"timestamp">> => Now, <<"node">> => atom_to_binary(node()),
               <<"clientid">> => <<"c_emqx">>, <<"username">> => <<"u_emqx">>,
               <<"peerhost">> => <<"192.168.0.10">>, <<"peername">> => <<"192.168.0.10:56431">>,
               <<"client_attrs">> => #{}},
    Msg = #{<<"id">> => binary:encode_hex(crypto:strong_rand_bytes(16)),
            <<"payload">> => <<"{\"msg\": \"hello\"}">>, <<"topic">> => <<"t/a">>, <<"qos">> => 1,
            <<"flags">> => #{<<"dup">> => false, <<"retain">> => false},
            <<"pub_props">> => #{<<"User-Property">> => #{<<"foo">> => <<"bar">>}},
            <<"publish_received_at">> => Now},
    Conn = #{<<"sockname">> => <<"0.0.0.0:1883">>, <<"proto_name">> => <<"MQTT">>, <<"proto_ver">> => 5,
             <<"keepalive">> => 60, <<"clean_start">> => true, <<"expiry_interval">> => 3600,
             <<"mountpoint">> => <<"undefined">>, <<"is_bridge">> => false,
             <<"conn_props">> => #{<<"User-Property">> => #{}}, <<"connected_at">> => Now,
             <<"receive_maximum">> => 32},
    Extra = case Event of
                <<"message.publish">> -> Msg;
                <<"message.delivered">> -> Msg#{<<"from_clientid">> => <<"c_emqx_1">>, <<"from_username">> => <<"u_emqx_1">>};
                <<"message.acked">> -> Msg#{<<"from_clientid">> => <<"c_emqx_1">>, <<"from_username">> => <<"u_emqx_1">>,
                                            <<"puback_props">> => #{<<"User-Property">> => #{}}};
                <<"message.dropped">> -> Msg#{<<"reason">> => <<"no_subscribers">>};
                <<"delivery.dropped">> -> Msg#{<<"reason">> => <<"queue_full">>, <<"from_clientid">> => <<"c_emqx_1">>,
                                               <<"from_username">> => <<"u_emqx_1">>};
                <<"client.connected">> -> Conn;
                <<"client.disconnected">> -> Conn#{<<"reason">> => <<"normal">>, <<"disconnected_at">> => Now,
                                                   <<"disconn_props">> => #{<<"User-Property">> => #{}}};
                <<"client.connack">> -> Conn#{<<"reason_code">> => <<"success">>};
                <<"session.subscribed">> -> #{<<"topic">> => <<"t/a">>, <<"qos">> => 1,
                                              <<"sub_props">> => #{<<"User-Property">> => #{}}};
                <<"session.unsubscribed">> -> #{<<"topic">> => <<"t/a">>, <<"qos">> => 1,
                                                <<"unsub_props">> => #{<<"User-Property">> => #{}}};
                <<"client.check_authz_complete">> -> #{<<"topic">> => <<"t/a">>, <<"action">> => <<"publish">>,
                                                       <<"authz_source">> => <<"cache">>, <<"result">> => <<"allow">>};
                <<"client.check_authn_complete">> -> #{<<"reason_code">> => <<"success">>, <<"is_anonymous">> => false,
                                                       <<"is_superuser">> => true};
                _ -> #{}
            end,
    maps:merge(Common, Extra).

%% @doc OAUTHBEARER with the OAuth 2.0 client-credentials grant against the
%% real broker's SASL_PLAINTEXT/OAUTHBEARER listener (Kafka's unsecured-JWT
%% validator, scope "kafka" required) and a token endpoint served by this
%% suite: the form the plugin posts, tokens reaching Kafka, refresh before
%% expiry (new connections after the first token expired still
%% authenticate), one fetch shared by the connector and its actions, the
%% secret masked, and a refusing endpoint reported in the connector status
%% and recovered from.
-module(emqx_confluent_oauth_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").
-include("emqx_message.hrl").

-compile([export_all, nowarn_export_all]).

-import(ec_api, [call/2, call/3]).

all() -> [t_token_lifetime_and_principal, t_client_credentials_produce_and_refresh,
          t_endpoint_refuses_then_recovers, t_https_endpoint_verified].

init_per_suite(Config) ->
    ok = ec_api:start_app(filename:join(?config(priv_dir, Config), "data")),
    {Port, Server} = token_server_start(),
    [{token_port, Port}, {token_server, Server} | Config].

end_per_suite(Config) ->
    exit(?config(token_server, Config), kill),
    _ = application:stop(emqx_confluent),
    ok.

init_per_testcase(_, Config) ->
    token_server_set(#{status => 200, lifetime => 6}),
    ets:delete_all_objects(token_requests),
    Config.

end_per_testcase(_, _) ->
    ec_api:delete_all().

%% ---- cases --------------------------------------------------------------------

%% expires_in first, then the JWT's exp, else an hour; the JWT's sub names
%% the principal
t_token_lifetime_and_principal(_) ->
    Now = 1700000000000,
    Jwt = <<(b64url(<<"{\"alg\":\"none\"}">>))/binary, ".",
            (b64url(<<"{\"sub\":\"svc-1\",\"exp\":1700000300}">>))/binary, ".">>,
    P = fun emqx_confluent_oauth:principal_and_expiry/3,
    ?assertEqual({<<"svc-1">>, Now + 100000}, P(Jwt, 100, Now)),
    ?assertEqual({<<"svc-1">>, Now + 120000}, P(Jwt, <<"120">>, Now)),
    ?assertEqual({<<"svc-1">>, 1700000300000}, P(Jwt, undefined, Now)),
    ?assertEqual({undefined, Now + 3600000}, P(<<"opaque-token">>, undefined, Now)),
    ?assertEqual({undefined, Now + 3600000}, P(<<"a.%%%.b">>, 0, Now)).

t_client_credentials_produce_and_refresh(Config) ->
    Topic = ec_test_util:unique_topic(<<"oauth">>),
    ok = ec_test_util:create_topic(Topic, 1),
    T0 = erlang:monotonic_time(millisecond),
    {201, C} = call(post, "/connectors", connector(<<"oauth1">>, ?config(token_port, Config))),
    ?assertMatch(#{<<"authentication">> := #{<<"client_secret">> := <<"******">>,
                                             <<"client_id">> := <<"emqx-oauth1">>}}, C),
    ec_api:wait_status("/connectors/kafka_producer:oauth1", <<"connected">>, 20000),
    %% the form of RFC 6749 §4.4, as EMQX posts it
    [{_, _, Form} | _] = ets:tab2list(token_requests),
    ?assertEqual(#{<<"grant_type">> => <<"client_credentials">>, <<"client_id">> => <<"emqx-oauth1">>,
                   <<"client_secret">> => <<"s3cret">>, <<"scope">> => <<"kafka">>}, maps:from_list(Form)),
    setup_action(Topic),
    publish(20),
    ?assertEqual(20, length(ec_test_util:consume(Topic, 20))),
    %% tokens live 6 s: refreshed at ~80 %, by one fetch for the connector's
    %% probe and the action together
    ec_test_util:wait_until(fun() -> ets:info(token_requests, size) >= 4 end, 30000),
    Elapsed = erlang:monotonic_time(millisecond) - T0,
    Fetches = ets:info(token_requests, size),
    ?assert(Fetches =< Elapsed div 4000 + 2, {Fetches, Elapsed}),
    %% new connections long after the first token expired still authenticate
    {204, _} = call(delete, "/rules/oauth_rule"),
    {204, _} = call(delete, "/actions/kafka_producer:to_kafka"),
    setup_action(Topic),
    publish(20),
    ?assertEqual(40, length(ec_test_util:consume(Topic, 40))),
    {200, #{<<"metrics">> := #{<<"success">> := 20, <<"failed">> := 0}}} =
        call(get, "/actions/kafka_producer:to_kafka/metrics"),
    ?assertMatch(#{tokens := N} when N >= 4, emqx_confluent_nif:oauth_stats()).

t_endpoint_refuses_then_recovers(Config) ->
    token_server_set(#{status => 401, lifetime => 60}),
    {201, _} = call(post, "/connectors", connector(<<"oauth2">>, ?config(token_port, Config))),
    C = ec_api:wait_status("/connectors/kafka_producer:oauth2", <<"disconnected">>, 30000),
    Reason = maps:get(<<"status_reason">>, C),
    ct:pal("status_reason: ~s", [Reason]),
    ?assertMatch({match, _}, re:run(Reason, "HTTP 401"), Reason),
    ?assertEqual(nomatch, re:run(Reason, "s3cret")),
    %% the endpoint comes back: the next refresh attempt gets a token
    token_server_set(#{status => 200, lifetime => 60}),
    ec_api:wait_status("/connectors/kafka_producer:oauth2", <<"connected">>, 40000),
    ok.

%% an HTTPS token endpoint is verified against the system CA bundle: one
%% whose certificate comes from the throwaway test CA is refused
t_https_endpoint_verified(_) ->
    Tls = filename:join(ec_test_util:kafka(<<"KAFKA_DIR">>), "tls"),
    {ok, _} = application:ensure_all_started(ssl),
    {ok, L} = ssl:listen(0, [binary, {active, false}, {reuseaddr, true}, {ip, {127, 0, 0, 1}},
                             {certfile, filename:join(Tls, "broker.pem")},
                             {keyfile, filename:join(Tls, "broker.key")}]),
    {ok, {_, Port}} = ssl:sockname(L),
    Acceptor = spawn(fun() -> tls_accept(L) end),
    Conn = connector(<<"oauth3">>, Port),
    Https = <<"https://127.0.0.1:", (integer_to_binary(Port))/binary, "/oauth2/token">>,
    Auth = (maps:get(<<"authentication">>, Conn))#{<<"endpoint_uri">> => Https},
    {201, _} = call(post, "/connectors", Conn#{<<"authentication">> => Auth}),
    C = ec_api:wait_status("/connectors/kafka_producer:oauth3", <<"disconnected">>, 30000),
    Reason = maps:get(<<"status_reason">>, C),
    ?assertMatch({match, _}, re:run(Reason, "token endpoint https://.*unknown_ca"), Reason),
    ?assertEqual(0, ets:info(token_requests, size)),
    exit(Acceptor, kill),
    ssl:close(L).

tls_accept(L) ->
    case ssl:transport_accept(L) of
        {ok, S} -> _ = ssl:handshake(S, 5000), tls_accept(L);
        _ -> ok
    end.

%% ---- helpers ------------------------------------------------------------------

%% each case its own client id: stores are per credentials, and a store a
%% previous case used may still hold a valid token
connector(Name, Port) ->
    #{<<"type">> => <<"kafka_producer">>, <<"name">> => Name,
      <<"bootstrap_hosts">> => ec_test_util:kafka(<<"KAFKA_SASL_OAUTH">>),
      <<"authentication">> => #{<<"mechanism">> => <<"oauth">>,
                                <<"endpoint_uri">> => iolist_to_binary(["http://127.0.0.1:", integer_to_list(Port), "/oauth2/token"]),
                                <<"client_id">> => <<"emqx-", Name/binary>>, <<"client_secret">> => <<"s3cret">>,
                                <<"scope">> => <<"kafka">>},
      <<"metadata_request_timeout">> => <<"3s">>,
      <<"resource_opts">> => #{<<"health_check_interval">> => <<"500ms">>}}.

setup_action(Topic) ->
    {201, _} = call(post, "/actions",
                    #{<<"type">> => <<"kafka_producer">>, <<"name">> => <<"to_kafka">>, <<"connector">> => <<"oauth1">>,
                      <<"parameters">> => #{<<"topic">> => Topic, <<"message">> => #{<<"value">> => <<"${payload}">>}}}),
    ec_api:wait_status("/actions/kafka_producer:to_kafka", <<"connected">>, 20000),
    {201, _} = call(post, "/rules", #{<<"id">> => <<"oauth_rule">>, <<"sql">> => <<"SELECT * FROM \"oauth/#\"">>,
                                      <<"actions">> => [<<"kafka_producer:to_kafka">>]}),
    ok.

publish(N) ->
    [{ok, _} = emqx_confluent_hooks:on_message_publish(
                 #message{id = crypto:strong_rand_bytes(16), qos = 1, from = <<"dev">>, flags = #{},
                          headers = #{}, topic = <<"oauth/t">>, payload = integer_to_binary(I),
                          timestamp = erlang:system_time(millisecond)})
     || I <- lists:seq(1, N)],
    ok.

%% A token endpoint: POST form in, unsecured JWT (alg none) out, as an
%% identity provider would answer a client-credentials grant. Behaviour from
%% the token_conf table; every request recorded in token_requests.
token_server_start() ->
    Self = self(),
    Pid = spawn(fun() ->
                        ets:new(token_conf, [named_table, public]),
                        ets:new(token_requests, [named_table, public, ordered_set]),
                        {ok, L} = gen_tcp:listen(0, [binary, {active, false}, {reuseaddr, true},
                                                     {ip, {127, 0, 0, 1}}, {packet, http_bin}]),
                        {ok, Port} = inet:port(L),
                        Self ! {token_port, Port},
                        token_accept(L)
                end),
    receive {token_port, Port} -> {Port, Pid} after 5000 -> error(token_server_start) end.

token_server_set(Conf) -> ets:insert(token_conf, maps:to_list(Conf)).

token_accept(L) ->
    {ok, S} = gen_tcp:accept(L),
    Pid = spawn(fun() -> receive go -> token_serve(S) end end),
    ok = gen_tcp:controlling_process(S, Pid),
    Pid ! go,
    token_accept(L).

token_serve(S) ->
    {ok, {http_request, 'POST', {abs_path, <<"/oauth2/token">>}, _}} = gen_tcp:recv(S, 0, 5000),
    Len = token_headers(S, 0),
    ok = inet:setopts(S, [{packet, raw}]),
    {ok, Body} = case Len of 0 -> {ok, <<>>}; _ -> gen_tcp:recv(S, Len, 5000) end,
    Form = uri_string:dissect_query(Body),
    ets:insert(token_requests, {erlang:unique_integer([monotonic]), erlang:monotonic_time(millisecond), Form}),
    [{status, Status}] = ets:lookup(token_conf, status),
    [{lifetime, Life}] = ets:lookup(token_conf, lifetime),
    RespBody = case Status of
                   200 ->
                       {_, Id} = lists:keyfind(<<"client_id">>, 1, Form),
                       {_, Scope} = lists:keyfind(<<"scope">>, 1, Form),
                       Now = erlang:system_time(second),
                       Claims = #{<<"sub">> => Id, <<"iat">> => Now, <<"exp">> => Now + Life,
                                  <<"scope">> => binary:split(Scope, <<" ">>, [global])},
                       Jwt = <<(b64url(<<"{\"alg\":\"none\"}">>))/binary, ".", (b64url(json(Claims)))/binary, ".">>,
                       json(#{<<"access_token">> => Jwt, <<"token_type">> => <<"Bearer">>, <<"expires_in">> => Life});
                   _ -> <<"{\"error\":\"invalid_client\"}">>
               end,
    ok = gen_tcp:send(S, [<<"HTTP/1.1 ">>, integer_to_binary(Status), <<" X\r\ncontent-type: application/json\r\n">>,
                          <<"content-length: ">>, integer_to_binary(byte_size(RespBody)),
                          <<"\r\nconnection: close\r\n\r\n">>, RespBody]),
    gen_tcp:close(S).

token_headers(S, Len) ->
    case gen_tcp:recv(S, 0, 5000) of
        {ok, {http_header, _, 'Content-Length', _, V}} -> token_headers(S, binary_to_integer(V));
        {ok, {http_header, _, _, _, _}} -> token_headers(S, Len);
        {ok, http_eoh} -> Len
    end.

json(T) -> {ok, J} = emqx_confluent_nif:json_encode(T), J.

b64url(B) ->
    << <<(case C of $+ -> $-; $/ -> $_; _ -> C end)>> || <<C>> <= base64:encode(B), C =/= $= >>.

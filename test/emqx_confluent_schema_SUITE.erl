%% @doc Configuration validation for the REST layer: names, field-path errors
%% from the same parsers the runtime uses, read-only fields, secret masking.
-module(emqx_confluent_schema_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-compile([export_all, nowarn_export_all]).

-define(S, emqx_confluent_schema).

all() -> [t_names, t_connector_errors, t_action_errors, t_read_only_fields, t_secrets].

conn() ->
    #{<<"bootstrap_hosts">> => <<"pkc-abc.eu-west-1.aws.confluent.cloud:9092">>,
      <<"authentication">> => #{<<"username">> => <<"KEY">>, <<"password">> => <<"SECRET">>},
      <<"ssl">> => #{<<"enable">> => true}}.

t_names(_) ->
    ?assertEqual(ok, ?S:validate_name(<<"my_confluent-1">>)),
    ?assertEqual({error, <<"Name cannot be empty string">>}, ?S:validate_name(<<>>)),
    ?assertEqual({error, <<"Name length must be less than 255">>}, ?S:validate_name(binary:copy(<<"a">>, 255))),
    ?assertEqual(ok, ?S:validate_name(binary:copy(<<"a">>, 254))),
    {error, M} = ?S:validate_name(<<"_x">>),
    ?assertMatch({match, _}, re:run(M, "^Invalid name format")),
    ?assertMatch({error, _}, ?S:validate_name(<<"a b">>)).

msg(Type, Conf) -> {error, M} = ?S:check_connector(Type, Conf), M.

t_connector_errors(_) ->
    ?assertMatch({ok, _}, ?S:check_connector(<<"confluent_producer">>, conn())),
    ?assertMatch({ok, _}, ?S:check_connector(<<"kafka_producer">>, #{<<"bootstrap_hosts">> => <<"k1, k2:9093">>})),
    ?assertMatch(<<"type:", _/binary>>, msg(<<"nope">>, conn())),
    ?assertMatch(<<"bootstrap_hosts:", _/binary>>, msg(<<"kafka_producer">>, #{})),
    ?assertMatch(<<"authentication", _/binary>>, msg(<<"confluent_producer">>, maps:remove(<<"authentication">>, conn()))),
    ?assertMatch(<<"connect_timeout:", _/binary>>, msg(<<"confluent_producer">>, (conn())#{<<"connect_timeout">> => <<"5 parsecs">>})),
    ?assertMatch(<<"socket_opts.sndbuf:", _/binary>>,
                 msg(<<"kafka_producer">>, #{<<"bootstrap_hosts">> => <<"k">>, <<"socket_opts">> => #{<<"sndbuf">> => <<"1Mb">>}})),
    ?assertMatch(<<"authentication.mechanism:", _/binary>>,
                 msg(<<"kafka_producer">>, #{<<"bootstrap_hosts">> => <<"k">>,
                                             <<"authentication">> => #{<<"mechanism">> => <<"md5">>}})),
    %% OAuth client credentials (EMQX 6 field names)
    OAuth = #{<<"mechanism">> => <<"oauth">>, <<"endpoint_uri">> => <<"https://idp.example.com/token">>,
              <<"client_id">> => <<"id">>, <<"client_secret">> => <<"sec">>, <<"scope">> => <<"kafka">>},
    K = fun(A) -> #{<<"bootstrap_hosts">> => <<"k">>, <<"authentication">> => A} end,
    ?assertMatch({ok, _}, ?S:check_connector(<<"kafka_producer">>, K(OAuth))),
    ?assertMatch({ok, _}, ?S:check_connector(<<"kafka_producer">>,
                                             K((maps:remove(<<"scope">>, OAuth))#{<<"mechanism">> => <<"oauthbearer">>,
                                                                                 <<"grant_type">> => <<"client_credentials">>}))),
    ?assertMatch(<<"authentication.endpoint_uri:", _/binary>>, msg(<<"kafka_producer">>, K(maps:remove(<<"endpoint_uri">>, OAuth)))),
    ?assertMatch(<<"authentication.endpoint_uri: expected an http:// or https:// URL">>,
                 msg(<<"kafka_producer">>, K(OAuth#{<<"endpoint_uri">> => <<"ftp://idp/token">>}))),
    ?assertMatch(<<"authentication.client_id:", _/binary>>, msg(<<"kafka_producer">>, K(maps:remove(<<"client_id">>, OAuth)))),
    ?assertMatch(<<"authentication.client_secret:", _/binary>>, msg(<<"kafka_producer">>, K(OAuth#{<<"client_secret">> => <<>>}))),
    ?assertMatch(<<"authentication.grant_type:", _/binary>>, msg(<<"kafka_producer">>, K(OAuth#{<<"grant_type">> => <<"password">>}))),
    ?assertMatch(<<"resource_opts.health_check_interval:", _/binary>>,
                 msg(<<"kafka_producer">>, #{<<"bootstrap_hosts">> => <<"k">>,
                                             <<"resource_opts">> => #{<<"health_check_interval">> => <<"2h">>}})).

act(Params) -> #{<<"connector">> => <<"c1">>, <<"parameters">> => maps:merge(#{<<"topic">> => <<"t">>}, Params)}.

amsg(Params) ->
    {error, M} = ?S:check_action(<<"confluent_producer">>, act(Params), (conn())#{<<"type">> => <<"confluent_producer">>}),
    M.

t_action_errors(_) ->
    C = (conn())#{<<"type">> => <<"confluent_producer">>},
    ?assertMatch({ok, _}, ?S:check_action(<<"confluent_producer">>, act(#{}), C)),
    %% staleness and retry bounds (EMQX master): infinity or a value
    ?assertMatch({ok, _}, ?S:check_action(<<"confluent_producer">>,
                                          act(#{<<"max_batch_age">> => <<"30s">>, <<"max_retries">> => 3}), C)),
    ?assertMatch({ok, _}, ?S:check_action(<<"confluent_producer">>,
                                          act(#{<<"max_batch_age">> => <<"infinity">>, <<"max_retries">> => <<"infinity">>}), C)),
    ?assertMatch(<<"parameters.max_batch_age:", _/binary>>, amsg(#{<<"max_batch_age">> => <<"soon">>})),
    ?assertMatch(<<"parameters.max_retries:", _/binary>>, amsg(#{<<"max_retries">> => -1})),
    ?assertEqual({error, <<"connector: required">>}, ?S:check_action(<<"confluent_producer">>, maps:remove(<<"connector">>, act(#{})), C)),
    ?assertMatch({error, <<"connector: no ", _/binary>>}, ?S:check_action(<<"confluent_producer">>, act(#{}), undefined)),
    ?assertMatch({error, <<"connector: is a kafka_producer connector", _/binary>>},
                 ?S:check_action(<<"confluent_producer">>, act(#{}), C#{<<"type">> => <<"kafka_producer">>})),
    ?assertMatch(<<"parameters.topic:", _/binary>>, amsg(#{<<"topic">> => <<>>})),
    ?assertMatch(<<"parameters.kafka_headers:", _/binary>>, amsg(#{<<"kafka_headers">> => <<"x${a}">>})),
    ?assertMatch(<<"parameters.kafka_ext_headers[1].kafka_ext_header_value:", _/binary>>,
                 amsg(#{<<"kafka_ext_headers">> => [#{<<"kafka_ext_header_key">> => <<"k">>,
                                                      <<"kafka_ext_header_value">> => <<"a${b}">>}]})),
    ?assertMatch({match, _}, re:run(amsg(#{<<"partition_strategy">> => <<"key_dispatch">>,
                                           <<"message">> => #{<<"key">> => <<>>}}), "key cannot be empty")),
    ?assertMatch(<<"parameters.buffer.mode: expected memory, disk or hybrid">>,
                 amsg(#{<<"buffer">> => #{<<"mode">> => <<"tape">>}})),
    ?assertMatch(<<"parameters.buffer.mode: disk-mode buffering is disallowed when using dynamic topics">>,
                 amsg(#{<<"topic">> => <<"t-${clientid}">>, <<"buffer">> => #{<<"mode">> => <<"disk">>}})),
    ?assertMatch(<<"parameters.buffer.segment_bytes:", _/binary>>,
                 amsg(#{<<"buffer">> => #{<<"mode">> => <<"disk">>, <<"segment_bytes">> => <<"10Mb">>}})),
    C = (conn())#{<<"type">> => <<"confluent_producer">>},
    [?assertMatch({ok, _}, ?S:check_action(<<"confluent_producer">>, act(#{<<"buffer">> => #{<<"mode">> => M}}), C))
     || M <- [<<"memory">>, <<"disk">>, <<"hybrid">>]],
    ?assertMatch(<<"parameters.message.timestamp:", _/binary>>, amsg(#{<<"message">> => #{<<"timestamp">> => <<"1">>}})),
    ?assertMatch(<<"parameters.query_mode:", _/binary>>, amsg(#{<<"query_mode">> => <<"later">>})).

t_read_only_fields(_) ->
    Body = (conn())#{<<"status">> => <<"connected">>, <<"node_status">> => [], <<"name">> => <<"x">>,
                     <<"id">> => <<"confluent_producer:x">>},
    {ok, Stored} = ?S:check_connector(<<"confluent_producer">>, Body),
    ?assertEqual(conn(), Stored).

t_secrets(_) ->
    Masked = ?S:mask_secrets((conn())#{<<"ssl">> => #{<<"enable">> => true, <<"password">> => <<"kp">>}}),
    ?assertMatch(#{<<"authentication">> := #{<<"password">> := <<"******">>, <<"username">> := <<"KEY">>},
                   <<"ssl">> := #{<<"password">> := <<"******">>}}, Masked),
    ?assertEqual(#{<<"bootstrap_hosts">> => <<"k">>}, ?S:mask_secrets(#{<<"bootstrap_hosts">> => <<"k">>})),
    ?assertMatch(#{<<"authentication">> := #{<<"client_secret">> := <<"******">>, <<"client_id">> := <<"id">>}},
                 ?S:mask_secrets(#{<<"authentication">> => #{<<"mechanism">> => <<"oauth">>, <<"client_id">> => <<"id">>,
                                                             <<"client_secret">> => <<"sec">>}})),
    %% sending the masked body back keeps the stored secrets; a new value replaces them
    Old = (conn())#{<<"ssl">> => #{<<"enable">> => true, <<"password">> => <<"kp">>}},
    ?assertEqual(Old, ?S:unmask_secrets(Masked, Old)),
    New = put_in_auth(Masked, <<"NEW">>),
    ?assertMatch(#{<<"authentication">> := #{<<"password">> := <<"NEW">>}}, ?S:unmask_secrets(New, Old)).

put_in_auth(M, P) ->
    A = maps:get(<<"authentication">>, M),
    M#{<<"authentication">> => A#{<<"password">> => P}}.

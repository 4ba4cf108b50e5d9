%% @doc Validation of connector and action configuration for the REST API
%% (rest-api.md §1.4-1.6, confluent-connector-and-action.md §1): EMQX's name
%% rules and messages, read-only request fields dropped, field checks by the
%% same C parsers the runtime uses (so what validates also runs), and secrets
%% masked as "******" in responses and kept when sent back masked.
-module(emqx_confluent_schema).

-export([validate_name/1, check_connector/2, check_action/3, check_source/3, mask_secrets/1,
         unmask_secrets/2, types/0, types/1, with_defaults/3]).

-define(MASK, <<"******">>).
%% paths of secret fields (rest-api.md §1.5)
-define(SECRETS, [[<<"authentication">>, <<"password">>], [<<"authentication">>, <<"client_secret">>],
                  [<<"ssl">>, <<"password">>], [<<"password">>]]).
-define(READ_ONLY, [<<"id">>, <<"type">>, <<"name">>, <<"status">>, <<"status_reason">>,
                    <<"node_status">>, <<"node">>]).
-define(TYPES, [<<"confluent_producer">>, <<"kafka_producer">>]).

%% @doc EMQX's resource name rule: 1-254 characters, ^[0-9a-zA-Z][-0-9a-zA-Z_]*$.
-spec validate_name(term()) -> ok | {error, binary()}.
validate_name(<<>>) -> {error, <<"Name cannot be empty string">>};
validate_name(Name) when is_binary(Name), byte_size(Name) > 254 ->
    {error, <<"Name length must be less than 255">>};
validate_name(Name) when is_binary(Name) ->
    case re:run(Name, "^[0-9a-zA-Z][-0-9a-zA-Z_]*$", [{capture, none}]) of
        match -> ok;
        nomatch ->
            {error, <<"Invalid name format. The name must begin with a letter or number "
                      "(0-9, a-z, A-Z) and can only include underscores and hyphens as "
                      "non-initial characters. Got: ", Name/binary>>}
    end;
validate_name(_) -> {error, <<"name: expected a string">>}.

%% @doc Checks a connector body for Type; returns the body to store (read-only
%% fields removed) or the reason (naming the field).
-spec check_connector(binary(), map()) -> {ok, map()} | {error, binary()}.
check_connector(<<"mqtt">>, Body) when is_map(Body) ->
    Conf = maps:without(?READ_ONLY, Body),
    source_nif_check(Conf, #{<<"parameters">> => #{<<"topic">> => <<"#">>}}, Conf);
check_connector(Type, Body) when is_map(Body) ->
    Conf = maps:without(?READ_ONLY, Body),
    case lists:member(Type, ?TYPES) of
        false -> {error, <<"type: expected confluent_producer or kafka_producer">>};
        true -> nif_check(Conf#{<<"type">> => Type}, undefined, Conf)
    end;
check_connector(_, _) -> {error, <<"expected a JSON object">>}.

%% @doc Checks an action body of Type against its connector's stored config.
-spec check_action(binary(), map(), map() | undefined) -> {ok, map()} | {error, binary()}.
check_action(Type, Body, ConnectorConf) when is_map(Body) ->
    Conf = case maps:take(<<"kafka">>, maps:without(?READ_ONLY, Body)) of
               %% the 5.0.2-5.3.0 name of parameters
               {P, C0} when not is_map_key(<<"parameters">>, C0) -> C0#{<<"parameters">> => P};
               _ -> maps:without(?READ_ONLY, Body)
           end,
    case {maps:get(<<"connector">>, Conf, undefined), ConnectorConf} of
        {C, _} when not is_binary(C); C =:= <<>> -> {error, <<"connector: required">>};
        {C, undefined} -> {error, <<"connector: no ", Type/binary, " connector named ", C/binary>>};
        {_, Conn} ->
            case maps:get(<<"type">>, Conn, Type) of
                Type -> nif_check(Conn, Conf, Conf);
                Other -> {error, <<"connector: is a ", Other/binary, " connector, not ", Type/binary>>}
            end
    end;
check_action(_, _, _) -> {error, <<"expected a JSON object">>}.

%% @doc Checks a source body (type mqtt) against its connector's stored config.
-spec check_source(binary(), map(), map() | undefined) -> {ok, map()} | {error, binary()}.
check_source(<<"mqtt">>, Body, ConnectorConf) when is_map(Body) ->
    Conf = maps:without(?READ_ONLY, Body),
    case {maps:get(<<"connector">>, Conf, undefined), ConnectorConf} of
        {C, _} when not is_binary(C); C =:= <<>> -> {error, <<"connector: required">>};
        {C, undefined} -> {error, <<"connector: no mqtt connector named ", C/binary>>};
        {_, Conn} -> source_nif_check(Conn, Conf, Conf)
    end;
check_source(_, Body, _) when is_map(Body) -> {error, <<"type: expected mqtt">>};
check_source(_, _, _) -> {error, <<"expected a JSON object">>}.

source_nif_check(Conn, Source, Keep) ->
    case emqx_confluent_nif:source_check(Conn, Source) of
        ok -> {ok, Keep};
        {error, #{message := M}} -> {error, M}
    end.

nif_check(Conn, Action, Keep) ->
    case emqx_confluent_nif:config_check(Conn, Action) of
        ok -> {ok, Keep};
        {error, #{message := M}} -> {error, M}
    end.

%% @doc Replaces every present secret with "******".
-spec mask_secrets(map()) -> map().
mask_secrets(Conf) ->
    lists:foldl(fun(Path, C) ->
                        case get_in(Path, C) of
                            {ok, V} when is_binary(V), V =/= <<>> -> put_in(Path, ?MASK, C);
                            _ -> C
                        end
                end, Conf, ?SECRETS).

%% @doc In New, a secret sent back as "******" keeps the value Old stored.
-spec unmask_secrets(map(), map()) -> map().
unmask_secrets(New, Old) ->
    lists:foldl(fun(Path, C) ->
                        case {get_in(Path, C), get_in(Path, Old)} of
                            {{ok, ?MASK}, {ok, Stored}} -> put_in(Path, Stored, C);
                            _ -> C
                        end
                end, New, ?SECRETS).

get_in([K], M) when is_map(M) -> maps:find(K, M);
get_in([K | Rest], M) when is_map(M) ->
    case maps:find(K, M) of
        {ok, Sub} -> get_in(Rest, Sub);
        error -> error
    end;
get_in(_, _) -> error.

put_in([K], V, M) -> M#{K => V};
put_in([K | Rest], V, M) -> M#{K => put_in(Rest, V, maps:get(K, M))}.

%% @doc Action types.
-spec types() -> [binary()].
types() -> ?TYPES.

-spec types(connector | action | source) -> [binary()].
types(connector) -> ?TYPES ++ [<<"mqtt">>];
types(action) -> ?TYPES;
types(source) -> [<<"mqtt">>].

%% @doc Conf with EMQX's defaults filled in where a field is absent
%% (confluent-connector-and-action.md §3-6), as GET responses show it.
-spec with_defaults(connector | action | source, binary(), map()) -> map().
with_defaults(Kind, Type, Conf) -> merge(defaults(Kind, Type), Conf).

merge(D, C) when is_map(D), is_map(C) ->
    maps:fold(fun(K, V, Acc) ->
                      case maps:find(K, D) of
                          {ok, DV} -> Acc#{K => merge(DV, V)};
                          error -> Acc#{K => V}
                      end
              end, D, C);
merge(_, C) -> C.

defaults(connector, <<"mqtt">>) ->
    #{<<"enable">> => true, <<"description">> => <<>>, <<"proto_ver">> => <<"v4">>,
      <<"keepalive">> => <<"160s">>, <<"connect_timeout">> => <<"15s">>, <<"clean_start">> => false,
      <<"session_expiry_interval">> => <<"2h">>,
      <<"ssl">> => #{<<"enable">> => false, <<"verify">> => <<"verify_none">>},
      <<"resource_opts">> => #{<<"health_check_interval">> => <<"15s">>,
                               <<"start_timeout">> => <<"5s">>, <<"start_after_created">> => true}};
defaults(source, _) ->
    #{<<"enable">> => true, <<"description">> => <<>>, <<"parameters">> => #{<<"qos">> => 1},
      <<"resource_opts">> => #{<<"health_check_interval">> => <<"15s">>}};
defaults(connector, Type) ->
    Confluent = Type =:= <<"confluent_producer">>,
    #{<<"enable">> => true, <<"description">> => <<>>,
      <<"authentication">> => case Confluent of
                                  true -> #{<<"mechanism">> => <<"plain">>};
                                  false -> <<"none">>
                              end,
      <<"connect_timeout">> => <<"5s">>, <<"min_metadata_refresh_interval">> => <<"3s">>,
      <<"metadata_request_timeout">> => <<"5s">>, <<"allow_auto_topic_creation">> => false,
      <<"socket_opts">> => #{<<"sndbuf">> => <<"1MB">>, <<"recbuf">> => <<"1MB">>,
                             <<"nodelay">> => true, <<"tcp_keepalive">> => <<"none">>},
      <<"ssl">> => #{<<"enable">> => Confluent, <<"verify">> => <<"verify_none">>,
                     <<"server_name_indication">> => <<"auto">>,
                     <<"versions">> => [<<"tlsv1.3">>, <<"tlsv1.2">>], <<"depth">> => 10,
                     <<"reuse_sessions">> => true, <<"secure_renegotiate">> => true,
                     <<"log_level">> => <<"notice">>, <<"hibernate_after">> => <<"5s">>,
                     <<"middlebox_comp_mode">> => true},
      <<"resource_opts">> => #{<<"health_check_interval">> => <<"15s">>,
                               <<"health_check_timeout">> => <<"60s">>,
                               <<"start_after_created">> => true, <<"start_timeout">> => <<"5s">>}};
defaults(action, Type) ->
    Message0 = #{<<"key">> => <<"${.clientid}">>, <<"value">> => <<"${.}">>},
    Message = case Type of
                  <<"kafka_producer">> -> Message0#{<<"timestamp">> => <<"${.timestamp}">>};
                  _ -> Message0
              end,
    #{<<"enable">> => true, <<"description">> => <<>>, <<"fallback_actions">> => [],
      <<"parameters">> =>
          #{<<"message">> => Message, <<"max_linger_time">> => <<"0ms">>,
            <<"max_linger_bytes">> => <<"10MB">>, <<"max_batch_bytes">> => <<"896KB">>,
            <<"compression">> => <<"no_compression">>, <<"partition_strategy">> => <<"random">>,
            <<"required_acks">> => <<"all_isr">>, <<"kafka_header_value_encode_mode">> => <<"none">>,
            <<"partition_count_refresh_interval">> => <<"60s">>,
            <<"partitions_limit">> => <<"all_partitions">>, <<"max_inflight">> => 10,
            <<"buffer">> => #{<<"mode">> => <<"memory">>, <<"per_partition_limit">> => <<"256MB">>,
                              <<"segment_bytes">> => <<"10MB">>,
                              <<"memory_overload_protection">> => true},
            <<"query_mode">> => <<"async">>, <<"sync_query_timeout">> => <<"5s">>},
      <<"resource_opts">> => #{<<"health_check_interval">> => <<"15s">>,
                               <<"health_check_timeout">> => <<"60s">>}}.

%% @doc The REST API under /api/v5 (rest-api.md §2-4) on the plugin's own
%% inets httpd listener: connectors, actions, rules, rule_test, metrics, a
%% status endpoint and Prometheus text. Every request is authenticated
%% (emqx_confluent_auth); bodies are JSON (the C codec); errors are
%% `{"code", "message"}'. This module only routes and shapes answers: changes
%% go through emqx_confluent_mgr, validation is emqx_confluent_config's.
-module(emqx_confluent_api).

-include_lib("inets/include/httpd.hrl").

-export([start/1, stop/0, port/0, do/1]).

-define(MGR, emqx_confluent_mgr).
-define(C, emqx_confluent_config).
-define(S, emqx_confluent_schema).
-define(NIF, emqx_confluent_nif).
-define(MAX_BODY, 16 * 1024 * 1024).

%% @doc Starts the listener on "Host:Port" (port 0 picks a free one).
start(Listen) ->
    {Ip, Port} = parse_listen(Listen),
    Root = filename:join(emqx_confluent_app:data_dir(), "httpd"),
    ok = filelib:ensure_path(Root),
    {ok, Pid} = inets:start(httpd, [{port, Port}, {bind_address, Ip}, {ipfamily, family(Ip)},
                                    {server_name, "emqx_confluent"}, {server_root, Root},
                                    {document_root, Root}, {modules, [?MODULE]},
                                    {max_body_size, ?MAX_BODY}, {keep_alive_timeout, 60},
                                    {minimum_bytes_per_second, 100}]),
    [{port, Actual}] = httpd:info(Pid, [port]),
    persistent_term:put({?MODULE, listener}, {Pid, Actual}),
    logger:notice("emqx_confluent: REST API listening on ~s:~b", [inet:ntoa(Ip), Actual]),
    {ok, Pid}.

stop() ->
    case persistent_term:get({?MODULE, listener}, undefined) of
        undefined -> ok;
        {Pid, _} ->
            persistent_term:erase({?MODULE, listener}),
            inets:stop(httpd, Pid)
    end.

port() -> element(2, persistent_term:get({?MODULE, listener})).

parse_listen(L) when is_binary(L) -> parse_listen(binary_to_list(L));
parse_listen(L) when is_list(L) ->
    {Host, PortS} = case string:split(L, ":", trailing) of
                        [P] -> {"127.0.0.1", P};
                        [H, P] -> {string:trim(H, both, "[]"), P}
                    end,
    {ok, Ip} = inet:parse_address(Host),
    {Ip, list_to_integer(PortS)}.

family(Ip) when tuple_size(Ip) =:= 8 -> inet6;
family(_) -> inet.

%% ---- httpd callback -----------------------------------------------------------

do(#mod{method = Method, request_uri = Uri, parsed_header = Headers, entity_body = Body}) ->
    {Status, Extra, RespBody} =
        try request(Method, Uri, Headers, Body)
        catch Class:Reason:Stack ->
                logger:error("emqx_confluent: API ~s ~s crashed: ~0p:~0p ~0p",
                             [Method, Uri, Class, Reason, Stack]),
                reply(500, error_body(<<"INTERNAL_ERROR">>, <<"internal error">>))
        end,
    Bin = iolist_to_binary(RespBody),
    Head = [{code, Status}, {content_length, integer_to_list(byte_size(Bin))}
            | case Bin of <<>> -> []; _ -> [{content_type, content_type(Extra)}] end]
        ++ [{K, V} || {K, V} <- Extra, K =/= content_type],
    {break, [{response, {response, Head, [Bin]}}]}.

content_type(Extra) -> proplists:get_value(content_type, Extra, "application/json").

request(Method, Uri, Headers, Body) ->
    #{path := Path} = Parsed = uri_string:parse(Uri),
    Query = case maps:find(query, Parsed) of
                {ok, Q} -> [{list_to_binary(K), list_to_binary(V)} || {K, V} <- uri_string:dissect_query(Q), is_list(V)];
                error -> []
            end,
    Segs = [list_to_binary(uri_string:percent_decode(S)) || S <- string:lexemes(Path, "/")],
    case Segs of
        [<<"api">>, <<"v5">> | Route] ->
            case emqx_confluent_auth:check(proplists:get_value("authorization", Headers), Method) of
                ok -> route(list_to_atom(string:lowercase(Method)), Route, Query, Body);
                {error, Status, Code, Msg, Extra} -> reply(Status, error_body(Code, Msg), Extra)
            end;
        _ ->
            reply(404, error_body(<<"NOT_FOUND">>, <<"Not Found">>))
    end.

%% ---- routes ---------------------------------------------------------------------

route(get, [<<"status">>], _, _) ->
    {ok, Vsn} = application:get_key(emqx_confluent, vsn),
    ok_json(#{<<"node">> => atom_to_binary(node()), <<"status">> => <<"running">>,
              <<"version">> => list_to_binary(Vsn), <<"nif">> => ?NIF:nif_info(),
              <<"emqx">> => emqx_confluent_hooks:registered()});
%% connectors
route(get, [<<"connectors">>], _, _) ->
    Cfg = ?MGR:snapshot(),
    ok_json([connector_out(Id, Cfg) || Id <- lists:sort(maps:keys(maps:get(<<"connectors">>, Cfg)))]);
route(post, [<<"connectors">>], _, Body) ->
    with_body(Body, fun(B) ->
                            created(?MGR:change({create, connector, B}),
                                    fun(Id) -> wait_started(connector, Id), connector_out(Id, ?MGR:snapshot()) end)
                    end);
route(post, [<<"connectors_probe">>], _, Body) ->
    with_body(Body, fun probe_connector/1);
route(Method, [<<"connectors">>, Id | Rest], Query, Body) ->
    with_id(connector, Id, fun() -> connector_route(Method, Id, Rest, Query, Body) end);
route(post, [<<"nodes">>, Node, <<"connectors">>, Id, <<"start">>], _, _) ->
    on_node(Node, fun() -> with_id(connector, Id, fun() -> start_op(connector, Id) end) end);
%% actions
route(get, [<<"action_types">>], _, _) ->
    ok_json(?S:types());
route(get, [<<"actions">>], _, _) ->
    Cfg = ?MGR:snapshot(),
    ok_json([action_out(Id, Cfg) || Id <- lists:sort(maps:keys(maps:get(<<"actions">>, Cfg)))]);
route(get, [<<"actions_summary">>], _, _) ->
    Cfg = ?MGR:snapshot(),
    ok_json([summary_out(Id, Cfg) || Id <- lists:sort(maps:keys(maps:get(<<"actions">>, Cfg)))]);
route(post, [<<"actions">>], _, Body) ->
    with_body(Body, fun(B) ->
                            created(?MGR:change({create, action, B}),
                                    fun(Id) -> wait_started(action, Id), action_out(Id, ?MGR:snapshot()) end)
                    end);
route(post, [<<"actions_probe">>], _, Body) ->
    with_body(Body, fun probe_action/1);
route(Method, [<<"actions">>, Id | Rest], Query, Body) ->
    with_id(action, Id, fun() -> action_route(Method, Id, Rest, Query, Body) end);
route(post, [<<"nodes">>, Node, <<"actions">>, Id, <<"start">>], _, _) ->
    on_node(Node, fun() -> with_id(action, Id, fun() -> start_op(action, Id) end) end);
%% sources (standalone mode: MQTT subscribers feeding the rules)
route(get, [<<"sources">>], _, _) ->
    Cfg = ?MGR:snapshot(),
    ok_json([source_out(Id, Cfg) || Id <- lists:sort(maps:keys(maps:get(<<"sources">>, Cfg, #{})))]);
route(post, [<<"sources">>], _, Body) ->
    with_body(Body, fun(B) ->
                            created(?MGR:change({create, source, B}),
                                    fun(Id) -> wait_started(source, Id), source_out(Id, ?MGR:snapshot()) end)
                    end);
route(Method, [<<"sources">>, Id | Rest], _Query, Body) ->
    with_id(source, Id, fun() -> source_route(Method, Id, Rest, Body) end);
%% rules
route(get, [<<"rules">>], Query, _) ->
    list_rules(Query);
route(post, [<<"rules">>], _, Body) ->
    with_body(Body, fun(B) -> created(?MGR:change({create, rule, B}), fun rule_out/1) end);
route(get, [<<"rules">>, Id], _, _) ->
    with_rule(Id, fun() -> ok_json(rule_out(Id)) end);
route(put, [<<"rules">>, Id], _, Body) ->
    with_body(Body, fun(B) -> changed(?MGR:change({update, rule, Id, B}), fun rule_out/1) end);
route(delete, [<<"rules">>, Id], _, _) ->
    no_content(?MGR:change({delete, rule, Id}));
route(get, [<<"rules">>, Id, <<"metrics">>], _, _) ->
    with_rule(Id, fun() -> ok_json(rule_metrics_out(Id)) end);
route(put, [<<"rules">>, Id, <<"metrics">>, <<"reset">>], _, _) ->
    with_rule(Id, fun() ->
                          {ok, R} = ?MGR:rule_res(Id),
                          ok = ?NIF:rule_metrics_reset(R),
                          ?MGR:reset_rates({rule, Id}),
                          reply(204, <<>>)
                  end);
route(post, [<<"rule_test">>], _, Body) ->
    with_body(Body, fun emqx_confluent_rule_test:rest/1);
route(get, [<<"prometheus">>, <<"stats">>], _, _) ->
    reply(200, emqx_confluent_prometheus:text(), [{content_type, "text/plain; version=0.0.4"}]);
route(_, _, _, _) ->
    reply(404, error_body(<<"NOT_FOUND">>, <<"Not Found">>)).

connector_route(get, Id, [], _, _) ->
    ok_json(connector_out(Id, ?MGR:snapshot()));
connector_route(put, Id, [], _, Body) ->
    with_body(Body, fun(B) ->
                            changed(?MGR:change({update, connector, Id, B}),
                                    fun(_) -> wait_started(connector, Id), connector_out(Id, ?MGR:snapshot()) end)
                    end);
connector_route(delete, Id, [], _, _) ->
    no_content(?MGR:change({delete, connector, Id}));
connector_route(put, Id, [<<"enable">>, Bool], _, _) ->
    enable(connector, Id, Bool);
connector_route(post, Id, [<<"start">>], _, _) ->
    start_op(connector, Id);
connector_route(_, _, _, _, _) ->
    reply(404, error_body(<<"NOT_FOUND">>, <<"Not Found">>)).

action_route(get, Id, [], _, _) ->
    ok_json(action_out(Id, ?MGR:snapshot()));
action_route(put, Id, [], _, Body) ->
    with_body(Body, fun(B) ->
                            changed(?MGR:change({update, action, Id, B}),
                                    fun(_) -> wait_started(action, Id), action_out(Id, ?MGR:snapshot()) end)
                    end);
action_route(delete, Id, [], Query, _) ->
    Also = proplists:get_value(<<"also_delete_dep_actions">>, Query) =:= <<"true">>,
    no_content(?MGR:change({delete, action, Id, Also}));
action_route(put, Id, [<<"enable">>, Bool], _, _) ->
    enable(action, Id, Bool);
action_route(post, Id, [<<"start">>], _, _) ->
    start_op(action, Id);
action_route(get, Id, [<<"metrics">>], _, _) ->
    ok_json(action_metrics_out(Id));
action_route(put, Id, [<<"metrics">>, <<"reset">>], _, _) ->
    _ = cluster_call(fun() -> reset_action_metrics(Id) end),
    reply(204, <<>>);
action_route(_, _, _, _, _) ->
    reply(404, error_body(<<"NOT_FOUND">>, <<"Not Found">>)).

source_route(get, Id, [], _) ->
    ok_json(source_out(Id, ?MGR:snapshot()));
source_route(put, Id, [], Body) ->
    with_body(Body, fun(B) ->
                            changed(?MGR:change({update, source, Id, B}),
                                    fun(_) -> wait_started(source, Id), source_out(Id, ?MGR:snapshot()) end)
                    end);
source_route(delete, Id, [], _) ->
    no_content(?MGR:change({delete, source, Id}));
source_route(put, Id, [<<"enable">>, Bool], _) ->
    enable(source, Id, Bool);
source_route(post, Id, [<<"start">>], _) ->
    start_op(source, Id);
source_route(get, Id, [<<"metrics">>], _) ->
    {_, Infos} = node_infos(source, Id),
    PerNode = [{N, metrics_json([received], M)} || #{node := N, metrics := M} <- Infos],
    ok_json(#{<<"metrics">> => sum_metrics([M || {_, M} <- PerNode]),
              <<"node_metrics">> => [#{<<"node">> => N, <<"metrics">> => M} || {N, M} <- PerNode]});
source_route(_, _, _, _) ->
    reply(404, error_body(<<"NOT_FOUND">>, <<"Not Found">>)).

%% ---- helpers --------------------------------------------------------------------

reply(Status, Body) -> reply(Status, Body, []).
reply(Status, Body, Extra) -> {Status, Extra, Body}.

ok_json(Term) -> reply(200, json(Term)).

json(Term) ->
    {ok, Bin} = ?NIF:json_encode(Term),
    Bin.

error_body(Code, Msg) -> json(#{<<"code">> => Code, <<"message">> => Msg}).

api_error(#{status := S, code := C, message := M} = E) ->
    reply(S, json(maps:merge(#{<<"code">> => C, <<"message">> => M}, maps:get(extra, E, #{})))).

with_body(Body, Fun) ->
    Bin = iolist_to_binary(Body),
    case ?NIF:json_decode(case Bin of <<>> -> <<"{}">>; _ -> Bin end) of
        {ok, Term} when is_map(Term) -> Fun(Term);
        {ok, _} -> reply(400, error_body(<<"BAD_REQUEST">>, <<"the request body must be a JSON object">>));
        {error, #{message := M}} -> reply(400, error_body(<<"BAD_REQUEST">>, <<"invalid JSON: ", M/binary>>))
    end.

with_id(Kind, Id, Fun) ->
    case ?C:parse_id(Kind, Id) of
        {ok, _, _} ->
            case ?C:find(Kind, Id, ?MGR:snapshot()) of
                {ok, _} -> Fun();
                error -> api_error(?C:not_found(Kind, Id))
            end;
        {error, E} -> api_error(E)
    end.

with_rule(Id, Fun) ->
    case ?C:find(rule, Id, ?MGR:snapshot()) of
        {ok, _} -> Fun();
        error -> reply(404, error_body(<<"NOT_FOUND">>, <<"Rule Id Not Found">>))
    end.

created({ok, Id}, Out) -> reply(201, json(Out(Id)));
created({error, E}, _) -> api_error(E).

changed({ok, Id}, Out) -> reply(200, json(Out(Id)));
changed({error, E}, _) -> api_error(E).

no_content({ok, _}) -> reply(204, <<>>);
no_content({error, E}) -> api_error(E).

enable(Kind, Id, Bool) when Bool =:= <<"true">>; Bool =:= <<"false">> ->
    no_content(?MGR:change({enable, Kind, Id, Bool =:= <<"true">>}));
enable(_, _, _) ->
    reply(400, error_body(<<"BAD_REQUEST">>, <<"enable: expected true or false">>)).

start_op(Kind, Id) ->
    case ?MGR:restart(Kind, Id) of
        ok ->
            case wait_started(Kind, Id) of
                #{status := connected} -> reply(204, <<>>);
                #{status_reason := R} when Kind =:= connector ->
                    reply(400, error_body(<<"BAD_REQUEST">>, R));
                _ ->
                    reply(400, error_body(<<"BAD_REQUEST">>,
                                          <<"Timeout while waiting for connector to reach connected status. "
                                            "Please try again.">>))
            end;
        {error, E} -> api_error(E)
    end.

on_node(Node, Fun) ->
    case atom_to_binary(node()) of
        Node -> Fun();
        _ ->
            case [N || N <- nodes(), atom_to_binary(N) =:= Node] of
                [N] ->
                    case catch erpc:call(N, Fun, 60000) of
                        {S, E, B} when is_integer(S) -> {S, E, B};
                        _ -> reply(503, error_body(<<"SERVICE_UNAVAILABLE">>, <<"request timeout">>))
                    end;
                [] -> reply(404, error_body(<<"NOT_FOUND">>, <<"Node not found: ", Node/binary>>))
            end
    end.

%% waits up to the object's start_timeout for `connected'; the status
start_waits(Kind, Id) ->
    Cfg = ?MGR:snapshot(),
    Conn = case Kind of
               connector -> ?C:find(connector, Id, Cfg);
               _ ->
                   {ok, #{<<"type">> := T, <<"connector">> := C}} = ?C:find(Kind, Id, Cfg),
                   ?C:find(connector, ?C:id(T, C), Cfg)
           end,
    Timeout = case Conn of
                  {ok, #{<<"resource_opts">> := #{<<"start_timeout">> := D}}} ->
                      case ?NIF:duration_ms(D) of {ok, Ms} -> Ms; error -> 5000 end;
                  _ -> 5000
              end,
    case Kind of
        action -> max(Timeout, 10000); %% EMQX waits up to ~10 s for the first action check
        _ -> Timeout
    end.

wait_started(Kind, Id) ->
    Deadline = erlang:monotonic_time(millisecond) + start_waits(Kind, Id),
    wait_loop(Kind, Id, Deadline).

wait_loop(Kind, Id, Deadline) ->
    S = ?MGR:status(Kind, Id),
    case maps:get(status, S) of
        connecting -> again(Kind, Id, Deadline, S);
        _ -> S
    end.

again(Kind, Id, Deadline, S) ->
    case erlang:monotonic_time(millisecond) < Deadline of
        true -> timer:sleep(100), wait_loop(Kind, Id, Deadline);
        false -> S
    end.

%% ---- object shapes -----------------------------------------------------------------

%% {Node, Info} of every node running the plugin (this one first)
cluster_call(Fun) ->
    Local = Fun(),
    Remote = [R || {ok, R} <- erpc:multicall(nodes(), erlang, apply, [Fun, []], 5000)],
    [Local | Remote].

node_infos(Kind, Id) ->
    [Local | _] = Infos = [I || I <- cluster_call(fun() -> ?MGR:local_node_info(Kind, Id) end), is_map(I)],
    {Local, Infos}.

status_fields(Kind, Id) ->
    {_, Infos} = node_infos(Kind, Id),
    NodeStatus = [maps:merge(#{<<"node">> => N}, status_json(Kind, S)) || #{node := N, status := S} <- Infos],
    Statuses = lists:usort([maps:get(status, S) || #{status := S} <- Infos]),
    Top = case Statuses of
              [One] -> One;
              _ -> inconsistent
          end,
    Reason = case [R || #{status := #{status_reason := R}} <- Infos] of
                 [R1 | _] -> R1;
                 [] -> undefined
             end,
    Base = #{<<"status">> => atom_to_binary(Top), <<"node_status">> => NodeStatus},
    case {Kind, Reason} of
        {connector, undefined} -> Base;
        {connector, _} -> Base#{<<"status_reason">> => Reason};
        {_, undefined} -> Base#{<<"status_reason">> => <<>>, <<"error">> => <<>>};
        {_, _} -> Base#{<<"status_reason">> => Reason, <<"error">> => Reason}
    end.

status_json(Kind, #{status := St} = S) ->
    case {maps:find(status_reason, S), Kind} of
        {{ok, R}, _} -> #{<<"status">> => atom_to_binary(St), <<"status_reason">> => R};
        {error, connector} -> #{<<"status">> => atom_to_binary(St)};
        {error, _} -> #{<<"status">> => atom_to_binary(St), <<"status_reason">> => <<>>}
    end.

connector_out(Id, Cfg) ->
    {ok, #{<<"type">> := Type, <<"name">> := Name} = Obj} = ?C:find(connector, Id, Cfg),
    Conf = ?S:mask_secrets(?S:with_defaults(connector, Type, Obj)),
    maps:merge(Conf#{<<"actions">> => [maps:get(<<"name">>, A) || AId <- ?C:action_ids_of_connector(Id, Cfg),
                                                                  {ok, A} <- [?C:find(action, AId, Cfg)]],
                     <<"sources">> => [maps:get(<<"name">>, S) || SId <- ?C:source_ids_of_connector(Id, Cfg),
                                                                  {ok, S} <- [?C:find(source, SId, Cfg)]],
                     <<"type">> => Type, <<"name">> => Name},
               status_fields(connector, Id)).

action_out(Id, Cfg) ->
    {ok, #{<<"type">> := Type} = Obj} = ?C:find(action, Id, Cfg),
    Conf = ?S:with_defaults(action, Type, Obj),
    maps:merge(Conf#{<<"rules">> => ?C:rules_using(Id, Cfg)}, status_fields(action, Id)).

source_out(Id, Cfg) ->
    {ok, #{<<"type">> := Type} = Obj} = ?C:find(source, Id, Cfg),
    maps:merge(?S:with_defaults(source, Type, Obj), status_fields(source, Id)).

summary_out(Id, Cfg) ->
    Full = action_out(Id, Cfg),
    maps:merge(maps:with([<<"type">>, <<"name">>, <<"enable">>, <<"description">>, <<"created_at">>,
                          <<"last_modified_at">>, <<"status">>, <<"status_reason">>, <<"node_status">>,
                          <<"rules">>], Full),
               #{<<"tags">> => maps:get(<<"tags">>, Full, []), <<"referenced_as_fallback_action_by">> => []}).

-define(ACTION_METRICS, emqx_confluent_prometheus:action_metric_names()).

action_metrics_out(Id) ->
    {_, Infos} = node_infos(action, Id),
    PerNode = [{N, metrics_json(?ACTION_METRICS, M)} || #{node := N, metrics := M} <- Infos],
    #{<<"metrics">> => sum_metrics([M || {_, M} <- PerNode]),
      <<"node_metrics">> => [#{<<"node">> => N, <<"metrics">> => M} || {N, M} <- PerNode]}.

metrics_json(Keys, M) ->
    maps:from_list([{atom_to_binary(K), maps:get(K, M, zero(K))} || K <- Keys]).

zero(K) when K =:= rate; K =:= rate_last5m; K =:= rate_max;
             K =:= 'matched.rate'; K =:= 'matched.rate.max'; K =:= 'matched.rate.last5m' -> 0.0;
zero(_) -> 0.

sum_metrics([]) -> #{};
sum_metrics([First | Rest]) ->
    lists:foldl(fun(M, Acc) -> maps:map(fun(K, V) -> V + maps:get(K, M) end, Acc) end, First, Rest).

reset_action_metrics(Id) ->
    case ?MGR:action_res(Id) of
        {ok, R} -> ?NIF:action_metrics_reset(R), ?MGR:reset_rates({action, Id});
        error -> ok
    end.

rule_out(Id) ->
    Cfg = ?MGR:snapshot(),
    {ok, R} = ?C:find(rule, Id, Cfg),
    From = case ?MGR:rule_res(Id) of
               {ok, Res} -> ?NIF:rule_from(Res);
               error ->
                   {ok, Res} = ?NIF:rule_compile(Id, maps:get(<<"sql">>, R)),
                   ?NIF:rule_from(Res)
           end,
    Details = [begin
                   {ok, T, N} = ?C:parse_id(action, A),
                   St = case ?C:find(action, A, Cfg) of
                            {ok, _} -> atom_to_binary(maps:get(status, ?MGR:status(action, A)));
                            error -> <<"not_found">>
                        end,
                   #{<<"type">> => T, <<"name">> => N, <<"status">> => St}
               end || A <- maps:get(<<"actions">>, R)],
    R#{<<"from">> => From, <<"action_details">> => Details,
       <<"created_at">> => rfc3339(maps:get(<<"created_at">>, R)),
       <<"last_modified_at">> => rfc3339(maps:get(<<"last_modified_at">>, R))}.

rfc3339(Ms) ->
    list_to_binary(calendar:system_time_to_rfc3339(Ms, [{unit, millisecond}, {offset, "+00:00"}])).

-define(RULE_METRICS, [matched, passed, failed, 'failed.exception', 'failed.no_result',
                       'actions.total', 'actions.success', 'actions.failed',
                       'actions.failed.out_of_service', 'actions.failed.unknown', 'actions.discarded',
                       'matched.rate', 'matched.rate.max', 'matched.rate.last5m']).

rule_metrics_out(Id) ->
    Local = fun() ->
                    M = case ?MGR:rule_res(Id) of
                            {ok, R} -> ?NIF:rule_metrics(R);
                            error -> #{}
                        end,
                    #{rate := Rate, rate_last5m := L5, rate_max := Max} = ?MGR:rates({rule, Id}),
                    {atom_to_binary(node()),
                     metrics_json(?RULE_METRICS, M#{'matched.rate' => Rate, 'matched.rate.max' => Max,
                                                    'matched.rate.last5m' => L5})}
            end,
    PerNode = [X || {_, _} = X <- cluster_call(Local)],
    #{<<"id">> => Id, <<"metrics">> => sum_metrics([M || {_, M} <- PerNode]),
      <<"node_metrics">> => [#{<<"node">> => N, <<"metrics">> => M} || {N, M} <- PerNode]}.

list_rules(Query) ->
    Int = fun(K, D) ->
                  case proplists:get_value(K, Query) of
                      undefined -> {ok, D};
                      V -> try binary_to_integer(V) of
                               I when I > 0 -> {ok, I};
                               _ -> error
                           catch _:_ -> error
                           end
                  end
          end,
    case {Int(<<"page">>, 1), Int(<<"limit">>, 100)} of
        {{ok, Page}, {ok, Limit}} ->
            All = [rule_out(Id) || Id <- ?C:rule_ids(?MGR:snapshot())],
            Matching = [R || R <- All, rule_matches(R, Query)],
            PageRules = lists:sublist(Matching, (Page - 1) * Limit + 1, Limit),
            ok_json(#{<<"data">> => PageRules,
                      <<"meta">> => #{<<"page">> => Page, <<"limit">> => Limit,
                                      <<"count">> => length(Matching),
                                      <<"hasnext">> => Page * Limit < length(Matching)}});
        _ ->
            reply(400, error_body(<<"BAD_REQUEST">>, <<"page and limit must be positive integers">>))
    end.

rule_matches(R, Query) ->
    lists:all(fun({<<"enable">>, V}) -> atom_to_binary(maps:get(<<"enable">>, R)) =:= V;
                 ({<<"from">>, V}) -> lists:member(V, maps:get(<<"from">>, R));
                 ({<<"like_id">>, V}) -> contains(maps:get(<<"id">>, R), V);
                 ({<<"like_from">>, V}) -> lists:any(fun(F) -> contains(F, V) end, maps:get(<<"from">>, R));
                 ({<<"like_description">>, V}) -> contains(maps:get(<<"description">>, R), V);
                 ({<<"action">>, V}) -> lists:member(V, maps:get(<<"actions">>, R));
                 (_) -> true
              end, Query).

contains(Bin, Part) -> binary:match(Bin, Part) =/= nomatch.

%% ---- probes ------------------------------------------------------------------------

probe_connector(Body) ->
    Cfg = ?MGR:snapshot(),
    Type = maps:get(<<"type">>, Body, undefined),
    Old = case is_binary(Type) andalso is_binary(maps:get(<<"name">>, Body, undefined)) of
              true -> case ?C:find(connector, ?C:id(Type, maps:get(<<"name">>, Body)), Cfg) of
                          {ok, O} -> O;
                          error -> #{}
                      end;
              false -> #{}
          end,
    case is_binary(Type) andalso ?S:check_connector(Type, ?S:unmask_secrets(Body, Old)) of
        false -> reply(400, error_body(<<"BAD_REQUEST">>, <<"type: required">>));
        {error, M} -> reply(400, error_body(<<"BAD_REQUEST">>, M));
        {ok, Conf} ->
            probe(fun() ->
                          {ok, C} = ?NIF:connector_new(Conf#{<<"type">> => Type}),
                          ?NIF:connector_health(C)
                  end, Conf)
    end.

probe_action(Body) ->
    Cfg = ?MGR:snapshot(),
    Type = maps:get(<<"type">>, Body, undefined),
    ConnName = maps:get(<<"connector">>, Body, undefined),
    case is_binary(Type) andalso is_binary(ConnName) andalso ?C:find(connector, ?C:id(Type, ConnName), Cfg) of
        false -> reply(400, error_body(<<"BAD_REQUEST">>, <<"type and connector: required">>));
        error -> reply(400, error_body(<<"TEST_FAILED">>, <<"Connector \"", ConnName/binary, "\" not found">>));
        {ok, Conn} ->
            case ?S:check_action(Type, Body, Conn) of
                {error, M} -> reply(400, error_body(<<"BAD_REQUEST">>, M));
                {ok, Conf} ->
                    probe(fun() ->
                                  {ok, A} = ?NIF:action_new(?C:runtime_conf(Conn), probe_conf(Conf)),
                                  try ?NIF:action_health(A) after ?NIF:action_destroy(A) end
                          end, Conn)
            end
    end.

%% a probe checks the connection and the topic only: its buffer stays in memory
%% (a disk buffer's directory may belong to the running action of that name)
probe_conf(#{<<"parameters">> := #{<<"buffer">> := B} = P} = Conf) ->
    Conf#{<<"parameters">> := P#{<<"buffer">> := B#{<<"mode">> => <<"memory">>}}};
probe_conf(Conf) ->
    Conf.

%% runs the check in its own process (the producer dies with it), bounded
probe(Fun, Conf) ->
    Timeout = case ?NIF:duration_ms(maps:get(<<"connect_timeout">>, Conf, <<"5s">>)) of
                  {ok, Ms} -> Ms + 10000;
                  error -> 15000
              end,
    {Pid, Ref} = spawn_monitor(fun() -> exit({probe, Fun()}) end),
    receive
        {'DOWN', Ref, process, Pid, {probe, ok}} -> reply(204, <<>>);
        {'DOWN', Ref, process, Pid, {probe, {error, #{message := M}}}} ->
            reply(400, error_body(<<"TEST_FAILED">>, M));
        {'DOWN', Ref, process, Pid, Other} ->
            reply(400, error_body(<<"TEST_FAILED">>, iolist_to_binary(io_lib:format("~0p", [Other]))))
    after Timeout ->
            exit(Pid, kill),
            reply(400, error_body(<<"TEST_FAILED">>, <<"timeout">>))
    end.

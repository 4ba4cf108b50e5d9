%% @doc GET /api/v5/prometheus/stats: this node's action and rule counters
%% in the Prometheus text exposition format (version 0.0.4). Dotted EMQX
%% metric names become underscores; every series carries `id' and `node'.
-module(emqx_confluent_prometheus).

-export([text/0, action_metric_names/0]).

%% @doc The 18 keys of an action's metrics object (rest-api.md §3.2).
action_metric_names() ->
    [matched, success, failed, dropped, 'dropped.queue_full', 'dropped.expired', 'dropped.other',
     'dropped.resource_not_found', 'dropped.resource_stopped', queuing, queuing_bytes, inflight,
     retried, late_reply, received, rate, rate_last5m, rate_max].

-define(MGR, emqx_confluent_mgr).
-define(NIF, emqx_confluent_nif).

text() ->
    Cfg = ?MGR:snapshot(),
    Node = atom_to_binary(node()),
    Actions = [{Id, metrics_of(?MGR:action_res(Id), fun ?NIF:action_metrics/1), status_value(Id)}
               || Id <- lists:sort(maps:keys(maps:get(<<"actions">>, Cfg)))],
    Rules = [{Id, metrics_of(?MGR:rule_res(Id), fun ?NIF:rule_metrics/1)}
             || Id <- lists:sort(maps:keys(maps:get(<<"rules">>, Cfg)))],
    ActionKeys = [K || K <- action_metric_names(), not lists:member(K, [rate, rate_last5m, rate_max])],
    RuleKeys = lists:usort(lists:append([maps:keys(M) || {_, M} <- Rules])),
    [[family(<<"emqx_confluent_action_", (name(K))/binary>>, counter_or_gauge(K),
             [{Id, Node, maps:get(K, M, 0)} || {Id, M, _} <- Actions]) || K <- ActionKeys],
     family(<<"emqx_confluent_action_status">>, <<"gauge">>,
            [{Id, Node, S} || {Id, _, S} <- Actions]),
     [family(<<"emqx_confluent_rule_", (name(K))/binary>>, <<"counter">>,
             [{Id, Node, maps:get(K, M, 0)} || {Id, M} <- Rules]) || K <- RuleKeys]].

metrics_of({ok, Res}, Fun) -> Fun(Res);
metrics_of(error, _) -> #{}.

%% 1 connected, 0 otherwise (as EMQX's emqx_action_status)
status_value(Id) ->
    case ?MGR:status(action, Id) of
        #{status := connected} -> 1;
        _ -> 0
    end.

name(K) -> binary:replace(atom_to_binary(K), <<".">>, <<"_">>, [global]).

counter_or_gauge(K) when K =:= queuing; K =:= queuing_bytes; K =:= inflight -> <<"gauge">>;
counter_or_gauge(_) -> <<"counter">>.

family(_, _, []) -> [];
family(Name, Type, Series) ->
    [<<"# TYPE ">>, Name, <<" ">>, Type, <<"\n">>,
     [[Name, <<"{id=\"">>, escape(Id), <<"\",node=\"">>, escape(Node), <<"\"} ">>,
       integer_to_binary(V), <<"\n">>] || {Id, Node, V} <- Series]].

escape(B) ->
    binary:replace(binary:replace(binary:replace(B, <<"\\">>, <<"\\\\">>, [global]),
                                  <<"\"">>, <<"\\\"">>, [global]),
                   <<"\n">>, <<"\\n">>, [global]).

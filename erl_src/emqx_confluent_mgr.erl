%% @doc The node's registry of connectors, actions and rules. It owns the
%% configuration snapshot (emqx_confluent_config applies changes, the store
%% persists them) and makes the running system match it: one
%% emqx_confluent_connector process per enabled connector, enabled actions
%% added to their connector, enabled rules compiled, and the publish
%% pipeline (rules bound to the installed actions) rebuilt and published in
%% persistent_term for the hook.
%%
%% Cluster: a change made on one node is cast to the registry of every
%% connected node, which adopts a snapshot whose version is higher than its
%% own; a node that comes up is offered the snapshot, and answers with its
%% own when that is newer. Concurrent changes on two nodes: the higher
%% version wins (ties: the node that receives both keeps its own).
%%
%% Readers (the REST API) never call this process: statuses, the snapshot
%% and resources are in the public ETS table ?TAB.
-module(emqx_confluent_mgr).
-behaviour(gen_server).

-export([start_link/1, change/1, restart/2, refresh/0, snapshot/0, status/2, action_res/1, rule_res/1, source_stats/1,
         pipeline/0, rates/1, reset_rates/1, local_node_info/2]).
-export([init/1, handle_call/3, handle_cast/2, handle_info/2, terminate/2]).

-define(TAB, emqx_confluent_tab).
-define(PIPELINE, {emqx_confluent, pipeline}).
-define(NIF, emqx_confluent_nif).
-define(C, emqx_confluent_config).
-define(RATE_TICK, 5000).
-define(SOURCE_WAIT, 30000).

-record(st, {dir :: file:filename(), cfg :: map(),
             conns = #{} :: #{binary() => {pid(), map()}},
             acts = #{} :: #{binary() => {binary(), map()}},
             installed = #{} :: #{binary() => #{binary() => emqx_confluent_nif:action()}},
             rules = #{} :: #{binary() => {binary(), emqx_confluent_nif:rule()}},
             srcs = #{} :: #{binary() => {emqx_confluent_nif:source(), term()}},
             samples = #{} :: #{term() => [{integer(), integer()}]},
             started = erlang:monotonic_time(millisecond) :: integer()}).

start_link(Opts) ->
    gen_server:start_link({local, ?MODULE}, ?MODULE, Opts, []).

%% @doc Applies a configuration change (emqx_confluent_config:change/3).
-spec change(term()) -> {ok, binary()} | {error, emqx_confluent_config:error()}.
change(Req) -> gen_server:call(?MODULE, {change, Req}, 60000).

%% @doc Stops and starts a connector (with its actions) or reinstalls an action.
-spec restart(connector | action, binary()) -> ok | {error, emqx_confluent_config:error()}.
restart(Kind, Id) -> gen_server:call(?MODULE, {restart, Kind, Id}, 60000).

%% @doc Rebuilds the pipeline (and event hooks) from the current state.
refresh() -> gen_server:call(?MODULE, refresh, 60000).

-spec snapshot() -> map().
snapshot() -> ets:lookup_element(?TAB, cfg, 2).

%% @doc This node's status of a connector or action: `#{status, status_reason?}'.
-spec status(connector | action, binary()) -> map().
status(Kind, Id) ->
    Cfg = snapshot(),
    case ?C:find(Kind, Id, Cfg) of
        error -> #{status => disconnected, status_reason => <<"Not installed">>};
        {ok, Obj} ->
            case {Kind, enabled(Obj), ets:lookup(?TAB, {Kind, Id})} of
                {_, false, _} -> #{status => stopped};
                {source, true, _} -> source_status(Id, Obj, Cfg);
                {connector, true, _} when map_get(<<"type">>, Obj) =:= <<"mqtt">> ->
                    case ?C:source_ids_of_connector(Id, Cfg) of
                        [] -> #{status => connecting, status_reason => <<"no source uses this connector">>};
                        Srcs ->
                            Sts = [source_status(S, element(2, ?C:find(source, S, Cfg)), Cfg) || S <- Srcs],
                            case [St || #{status := connected} = St <- Sts] of
                                [_ | _] -> #{status => connected};
                                [] -> hd(Sts)
                            end
                    end;
                {connector, true, [{_, S}]} -> S;
                {connector, true, []} -> #{status => disconnected, status_reason => start_error(Id)};
                {action, true, [{_, S}]} -> S;
                {action, true, []} ->
                    #{<<"type">> := T, <<"connector">> := C} = Obj,
                    case ?C:find(connector, ?C:id(T, C), Cfg) of
                        {ok, Conn} ->
                            case enabled(Conn) of
                                false -> #{status => disconnected, status_reason => <<"Not installed">>};
                                true -> #{status => disconnected, status_reason => <<"Resource not operational">>}
                            end;
                        error -> #{status => disconnected, status_reason => <<"Not installed">>}
                    end
            end
    end.

source_status(Id, Obj, Cfg) ->
    case {enabled(Obj), connector_enabled(Obj#{<<"type">> => <<"mqtt">>}, Cfg), ets:lookup(?TAB, {source_res, Id})} of
        {false, _, _} -> #{status => stopped};
        {_, false, _} -> #{status => disconnected, status_reason => <<"Not installed">>};
        {_, _, []} -> #{status => disconnected, status_reason => start_error(Id)};
        {_, _, [{_, Res}]} ->
            case ?NIF:source_stats(Res) of
                #{connected := true} -> #{status => connected};
                #{last_error := <<>>} -> #{status => connecting};
                #{connects := 0, last_error := E} -> #{status => disconnected, status_reason => E};
                #{last_error := E} -> #{status => connecting, status_reason => E}
            end
    end.

%% @doc The source's counters (received) or an empty map.
source_stats(Id) ->
    case lookup({source_res, Id}) of
        {ok, Res} -> ?NIF:source_stats(Res);
        error -> #{}
    end.

start_error(Id) ->
    case ets:lookup(?TAB, {start_error, Id}) of
        [{_, R}] -> R;
        [] -> <<"Not installed">>
    end.

%% @doc Status and metrics of this node, for the API of any node (erpc).
local_node_info(Kind, Id) ->
    Base = #{node => atom_to_binary(node()), status => status(Kind, Id)},
    case Kind of
        action -> Base#{metrics => action_metrics(Id)};
        source -> Base#{metrics => maps:with([received], source_stats(Id))};
        connector -> Base
    end.

action_metrics(Id) ->
    M = case action_res(Id) of
            {ok, Res} -> ?NIF:action_metrics(Res);
            error -> #{}
        end,
    maps:merge(M, rates({action, Id})).

-spec action_res(binary()) -> {ok, emqx_confluent_nif:action()} | error.
action_res(Id) -> lookup({action_res, Id}).

-spec rule_res(binary()) -> {ok, emqx_confluent_nif:rule()} | error.
rule_res(Id) -> lookup({rule_res, Id}).

lookup(Key) ->
    case ets:lookup(?TAB, Key) of
        [{_, R}] -> {ok, R};
        [] -> error
    end.

%% @doc The pipeline the publish hook uses: {Pipeline, NodeBin, HasSyncActions},
%% or undefined.
pipeline() -> persistent_term:get(?PIPELINE, undefined).

%% @doc rate (last 5 s), rate_last5m and rate_max of `matched', per second.
rates(Key) ->
    case ets:lookup(?TAB, {rate, Key}) of
        [{_, R}] -> R;
        [] -> #{rate => 0.0, rate_last5m => 0.0, rate_max => 0.0}
    end.

reset_rates(Key) -> gen_server:cast(?MODULE, {reset_rates, Key}).

%% ---- gen_server -------------------------------------------------------------

init(#{data_dir := Dir}) ->
    process_flag(trap_exit, true),
    ?TAB = ets:new(?TAB, [named_table, public, set, {read_concurrency, true}]),
    case emqx_confluent_store:load(Dir) of
        {ok, Cfg0} ->
            Cfg = newest_of_peers(Cfg0),
            _ = Cfg =/= Cfg0 andalso emqx_confluent_store:save(Dir, Cfg),
            ok = net_kernel:monitor_nodes(true),
            erlang:send_after(?RATE_TICK, self(), rate_tick),
            {ok, reconcile(Cfg, #st{dir = Dir, cfg = Cfg})};
        {error, E} ->
            logger:error("emqx_confluent: cannot read the configuration: ~0p", [E]),
            {stop, {config, E}}
    end.

handle_call({change, Req}, _From, St) ->
    case ?C:change(Req, St#st.cfg, erlang:system_time(millisecond)) of
        {ok, Cfg1, Reply} ->
            Cfg = Cfg1#{<<"version">> => maps:get(<<"version">>, St#st.cfg) + 1},
            case emqx_confluent_store:save(St#st.dir, Cfg) of
                ok ->
                    St1 = reconcile(Cfg, St),
                    drop_buffers(St#st.cfg, Cfg, St1),
                    [gen_server:cast({?MODULE, N}, {replicate, node(), Cfg}) || N <- nodes()],
                    {reply, {ok, Reply}, St1};
                {error, E} ->
                    {reply, {error, #{status => 500, code => <<"INTERNAL_ERROR">>,
                                      message => iolist_to_binary(io_lib:format("cannot save: ~0p", [E]))}},
                     St}
            end;
        {error, _} = E ->
            {reply, E, St}
    end;
handle_call(refresh, _From, St) ->
    {reply, ok, rebuild(St)};
handle_call({restart, Kind, Id}, _From, St) ->
    Cfg = St#st.cfg,
    case ?C:find(Kind, Id, Cfg) of
        error -> {reply, {error, #{status => 404, code => <<"NOT_FOUND">>, message => <<"not found">>}}, St};
        {ok, Obj} ->
            Obj1 = case Kind of source -> Obj#{<<"type">> => <<"mqtt">>}; _ -> Obj end,
            case enabled(Obj) andalso (Kind =:= connector orelse connector_enabled(Obj1, Cfg)) of
                false ->
                    {reply, {error, #{status => 400, code => <<"BAD_REQUEST">>,
                                      message => <<"Forbidden operation, connector not enabled">>}}, St};
                true when Kind =:= connector ->
                    {reply, ok, reconcile(Cfg, stop_connector(Id, St))};
                true when Kind =:= source ->
                    {reply, ok, reconcile(Cfg, stop_source(Id, St))};
                true ->
                    {reply, ok, reconcile(Cfg, remove_action(Id, St))}
            end
    end.

handle_cast({replicate, From, Cfg}, St) ->
    Mine = maps:get(<<"version">>, St#st.cfg),
    case maps:get(<<"version">>, Cfg) of
        V when V > Mine ->
            case emqx_confluent_store:save(St#st.dir, Cfg) of
                ok ->
                    St1 = reconcile(Cfg, St),
                    drop_buffers(St#st.cfg, Cfg, St1),
                    {noreply, St1};
                {error, E} ->
                    logger:error("emqx_confluent: cannot save the replicated configuration: ~0p", [E]),
                    {noreply, St}
            end;
        V when V < Mine ->
            gen_server:cast({?MODULE, From}, {replicate, node(), St#st.cfg}),
            {noreply, St};
        _ ->
            {noreply, St}
    end;
handle_cast({reset_rates, Key}, St) ->
    ets:delete(?TAB, {rate, Key}),
    {noreply, St#st{samples = maps:remove(Key, St#st.samples)}}.

handle_info({ec_connector_installed, ConnId, Installed}, St) ->
    case maps:is_key(ConnId, St#st.conns) of
        true ->
            St1 = rebuild(St#st{installed = (St#st.installed)#{ConnId => Installed}}),
            {noreply, reconcile_sources(St1#st.cfg, St1)};
        false -> {noreply, St}
    end;
handle_info({nodeup, Node}, St) ->
    gen_server:cast({?MODULE, Node}, {replicate, node(), St#st.cfg}),
    {noreply, St};
handle_info({nodedown, _}, St) ->
    {noreply, St};
handle_info(rate_tick, St) ->
    erlang:send_after(?RATE_TICK, self(), rate_tick),
    %% also starts sources that waited for their actions
    {noreply, reconcile_sources(St#st.cfg, sample_rates(St))};
handle_info({'EXIT', Pid, Reason}, St) ->
    case [Id || {Id, {P, _}} <- maps:to_list(St#st.conns), P =:= Pid] of
        [Id] ->
            logger:error("emqx_confluent: connector ~s exited: ~0p; restarting", [Id, Reason]),
            St1 = St#st{conns = maps:remove(Id, St#st.conns), installed = maps:remove(Id, St#st.installed),
                        acts = maps:filter(fun(_, {C, _}) -> C =/= Id end, St#st.acts)},
            {noreply, reconcile(St1#st.cfg, St1)};
        [] ->
            {noreply, St}
    end;
handle_info(_, St) ->
    {noreply, St}.

terminate(_Reason, St) ->
    %% sources first: nothing new enters while the actions drain
    _ = [stop_source(Id, St) || Id <- maps:keys(St#st.srcs)],
    persistent_term:erase(?PIPELINE),
    _ = [stop_connector(Id, St) || Id <- maps:keys(St#st.conns)],
    ok.

%% ---- making the runtime match the snapshot ------------------------------------

reconcile(Cfg, St0) ->
    ets:insert(?TAB, {cfg, Cfg}),
    St1 = reconcile_connectors(Cfg, St0#st{cfg = Cfg}),
    St2 = reconcile_actions(Cfg, St1),
    reconcile_sources(Cfg, rebuild(reconcile_rules(Cfg, St2))).

enabled(Obj) -> maps:get(<<"enable">>, Obj, true) =/= false.

connector_enabled(#{<<"type">> := T, <<"connector">> := C}, Cfg) ->
    case ?C:find(connector, ?C:id(T, C), Cfg) of
        {ok, Conn} -> enabled(Conn);
        error -> false
    end.

reconcile_connectors(Cfg, St) ->
    Want = maps:filtermap(fun(_, Obj) ->
                                  %% an mqtt connector runs inside its sources
                                  case enabled(Obj) andalso maps:get(<<"type">>, Obj) =/= <<"mqtt">> of
                                      true -> {true, ?C:runtime_conf(Obj)};
                                      false -> false
                                  end
                          end, maps:get(<<"connectors">>, Cfg)),
    St1 = stop_unwanted(Want, St#st.conns, fun stop_connector/2, St),
    maps:fold(fun(Id, Conf, S) ->
                      case maps:is_key(Id, S#st.conns) of
                          true -> S;
                          false -> start_connector(Id, Conf, S)
                      end
              end, St1, Want).

%% stops each running {Handle, Conf} whose id is no longer wanted or is
%% wanted with another configuration (it is started again afterwards)
stop_unwanted(Want, Running, Stop, St) ->
    maps:fold(fun(Id, {_Handle, Conf}, S) ->
                      case maps:find(Id, Want) of
                          {ok, Conf} -> S;
                          _ -> Stop(Id, S)
                      end
              end, St, Running).

start_connector(Id, Conf, St) ->
    ets:delete(?TAB, {start_error, Id}),
    case emqx_confluent_connector:start_link(Id, Conf, #{owner => self(), tab => ?TAB}) of
        {ok, Pid} ->
            St#st{conns = (St#st.conns)#{Id => {Pid, Conf}}};
        {error, E} ->
            Reason = case E of
                         {config, #{message := M}} -> M;
                         _ -> iolist_to_binary(io_lib:format("~0p", [E]))
                     end,
            ets:insert(?TAB, {{start_error, Id}, Reason}),
            St
    end.

stop_connector(Id, St) ->
    case maps:take(Id, St#st.conns) of
        {{Pid, _}, Conns} ->
            unlink(Pid),
            catch emqx_confluent_connector:stop(Pid),
            receive {'EXIT', Pid, _} -> ok after 0 -> ok end,
            Gone = [A || {A, {C, _}} <- maps:to_list(St#st.acts), C =:= Id],
            [ets:delete(?TAB, {action_res, A}) || A <- Gone],
            St#st{conns = Conns, installed = maps:remove(Id, St#st.installed),
                  acts = maps:without(Gone, St#st.acts)};
        error ->
            St
    end.

reconcile_actions(Cfg, St) ->
    Want = maps:filtermap(fun(Id, #{<<"type">> := T, <<"connector">> := C} = Obj) ->
                                  ConnId = ?C:id(T, C),
                                  case enabled(Obj) andalso maps:is_key(ConnId, St#st.conns) of
                                      true -> {true, {ConnId, with_buffer_dir(Id, ?C:runtime_conf(Obj), St)}};
                                      false -> false
                                  end
                          end, maps:get(<<"actions">>, Cfg)),
    St1 = maps:fold(fun(Id, Have, S) ->
                            case maps:find(Id, Want) of
                                {ok, Have} -> S;
                                _ -> remove_action(Id, S)
                            end
                    end, St, St#st.acts),
    maps:fold(fun(Id, {ConnId, Conf} = W, S) ->
                      case maps:is_key(Id, S#st.acts) of
                          true -> S;
                          false ->
                              {Pid, _} = maps:get(ConnId, S#st.conns),
                              ok = emqx_confluent_connector:add_action(Pid, Id, Conf),
                              S#st{acts = (S#st.acts)#{Id => W}}
                      end
              end, St1, Want).

%% disk buffers live in <data_dir>/buffers/<type>_<name>
buffer_dir(Id, St) ->
    filename:join([St#st.dir, "buffers", binary_to_list(binary:replace(Id, <<":">>, <<"_">>))]).

%% disk mode keeps its records there; hybrid spills there (wiped at start)
with_buffer_dir(Id, #{<<"parameters">> := #{<<"buffer">> := #{<<"mode">> := Mode}}} = Conf, St)
  when Mode =:= <<"disk">>; Mode =:= <<"hybrid">> ->
    Dir = buffer_dir(Id, St),
    ok = filelib:ensure_dir(Dir),
    Conf#{<<"buffer_dir">> => list_to_binary(Dir)};
with_buffer_dir(_, Conf, _) ->
    Conf.

remove_action(Id, St) ->
    case maps:take(Id, St#st.acts) of
        {{ConnId, _}, Acts} ->
            case maps:find(ConnId, St#st.conns) of
                {ok, {Pid, _}} -> _ = emqx_confluent_connector:remove_action(Pid, Id);
                error -> ok
            end,
            ets:delete(?TAB, {action_res, Id}),
            Inst = maps:get(ConnId, St#st.installed, #{}),
            St#st{acts = Acts, installed = (St#st.installed)#{ConnId => maps:remove(Id, Inst)}};
        error ->
            St
    end.

reconcile_rules(Cfg, St) ->
    Rules = maps:get(<<"rules">>, Cfg),
    Kept = maps:filter(fun(Id, {Sql, _}) ->
                               case maps:find(Id, Rules) of
                                   {ok, #{<<"sql">> := Sql}} -> true;
                                   _ -> ets:delete(?TAB, {rule_res, Id}), false
                               end
                       end, St#st.rules),
    New = maps:fold(fun(Id, #{<<"sql">> := Sql}, Acc) ->
                            case maps:is_key(Id, Acc) of
                                true -> Acc;
                                false ->
                                    case ?NIF:rule_compile(Id, Sql) of
                                        {ok, R} ->
                                            ets:insert(?TAB, {{rule_res, Id}, R}),
                                            Acc#{Id => {Sql, R}};
                                        {error, E} ->
                                            %% validated on save; a snapshot from an older
                                            %% version may still carry one that fails
                                            logger:error("emqx_confluent: rule ~s does not compile: ~0p", [Id, E]),
                                            Acc
                                    end
                            end
                    end, Kept, Rules),
    St#st{rules = New}.

%% one subscriber per enabled source whose mqtt connector is enabled
reconcile_sources(Cfg, St) ->
    Want = maps:filtermap(fun(Id, #{<<"connector">> := C} = Obj) ->
                                  case ?C:find(connector, ?C:id(<<"mqtt">>, C), Cfg) of
                                      {ok, Conn} ->
                                          case enabled(Obj) andalso enabled(Conn) of
                                              true -> {true, {source_conn(Id, Conn), ?C:runtime_conf(Obj)}};
                                              false -> false
                                          end;
                                      error -> false
                                  end
                          end, maps:get(<<"sources">>, Cfg, #{})),
    St1 = stop_unwanted(Want, St#st.srcs, fun stop_source/2, St),
    {P, Node, _} = pipeline(),
    Ready = actions_ready(St1),
    maps:fold(fun(Id, {Conn, Src} = Conf, S) ->
                      case maps:is_key(Id, S#st.srcs) of
                          true -> S;
                          false when not Ready ->
                              %% the broker would hand over queued QoS 1 messages
                              %% at once: subscribe when the actions can take them
                              ets:insert(?TAB, {{start_error, Id}, <<"waiting for the rules' actions to be installed">>}),
                              S;
                          false ->
                              ets:delete(?TAB, {start_error, Id}),
                              case ?NIF:source_new(Conn, Src, Node, P) of
                                  {ok, Res} ->
                                      ets:insert(?TAB, {{source_res, Id}, Res}),
                                      S#st{srcs = (S#st.srcs)#{Id => {Res, Conf}}};
                                  {error, #{message := M}} ->
                                      ets:insert(?TAB, {{start_error, Id}, M}),
                                      S
                              end
                      end
              end, St1, Want).

%% a deleted action's disk buffer goes with it
drop_buffers(Old, New, St) ->
    Gone = maps:keys(maps:get(<<"actions">>, Old)) -- maps:keys(maps:get(<<"actions">>, New)),
    [file:del_dir_r(buffer_dir(Id, St)) || Id <- Gone],
    ok.

%% every action an enabled rule uses is installed, or the wait is over
%% (?SOURCE_WAIT ms since start: a broken action must not hold the sources)
actions_ready(St) ->
    Rules = maps:get(<<"rules">>, St#st.cfg),
    Installed = maps:fold(fun(_, M, Acc) -> maps:merge(Acc, M) end, #{}, St#st.installed),
    Wanted = lists:usort([A || R <- maps:values(Rules), enabled(R), A <- maps:get(<<"actions">>, R, []),
                               maps:is_key(A, St#st.acts)]),
    lists:all(fun(A) -> maps:is_key(A, Installed) end, Wanted)
        orelse erlang:monotonic_time(millisecond) - St#st.started > ?SOURCE_WAIT.

%% the client id: the connector's `clientid' if set, else
%% <clientid_prefix or emqx_confluent>_<source name>_<node hash>, stable across
%% restarts so the broker keeps the session
source_conn(SourceId, Conn) ->
    case maps:is_key(<<"clientid">>, Conn) of
        true -> ?C:runtime_conf(Conn);
        false ->
            [_, Name] = binary:split(SourceId, <<":">>),
            Prefix = maps:get(<<"clientid_prefix">>, Conn, <<"emqx_confluent">>),
            Hash = integer_to_binary(erlang:phash2(node()), 36),
            (?C:runtime_conf(Conn))#{<<"clientid">> => <<Prefix/binary, "_", Name/binary, "_", Hash/binary>>}
    end.

stop_source(Id, St) ->
    case maps:take(Id, St#st.srcs) of
        {{Res, _}, Srcs} ->
            ok = ?NIF:source_stop(Res),
            ets:delete(?TAB, {source_res, Id}),
            St#st{srcs = Srcs};
        error ->
            St
    end.

%% the pipeline: enabled rules, each bound to its installed actions
rebuild(St) ->
    Installed = maps:fold(fun(_, M, Acc) -> maps:merge(Acc, M) end, #{}, St#st.installed),
    [ets:delete(?TAB, K) || {{action_res, A} = K, _} <- ets:match_object(?TAB, {{action_res, '_'}, '_'}),
                            not maps:is_key(A, Installed)],
    [ets:insert(?TAB, {{action_res, A}, R}) || {A, R} <- maps:to_list(Installed)],
    Rules = maps:get(<<"rules">>, St#st.cfg),
    Enabled = [{Id, R} || {Id, {_, R}} <- lists:sort(maps:to_list(St#st.rules)),
                          enabled(maps:get(Id, Rules))],
    {ok, Set} = ?NIF:ruleset_new([R || {_, R} <- Enabled]),
    Bindings = [{Id, [Res || A <- maps:get(<<"actions">>, maps:get(Id, Rules), []),
                             {ok, Res} <- [maps:find(A, Installed)]]}
                || {Id, _} <- Enabled],
    {ok, P} = ?NIF:pipeline_new(Set, Bindings),
    %% whether a publish may owe sync replies (query_mode sync actions bound)
    Sync = lists:any(fun({_, Acts}) -> Acts =/= [] end,
                     [{Id, [A || A <- maps:get(<<"actions">>, maps:get(Id, Rules), []),
                                 maps:is_key(A, Installed), is_sync(A, St)]} || {Id, _} <- Enabled]),
    persistent_term:put(?PIPELINE, {P, atom_to_binary(node()), Sync}),
    ok = emqx_confluent_hooks:set_events(
           emqx_confluent_events:needed(lists:append([?NIF:rule_from(R) || {_, R} <- Enabled]))),
    [ok = ?NIF:source_set_pipeline(Res, P) || {Res, _} <- maps:values(St#st.srcs)],
    %% rates start from the moment an action or rule appears
    Now = erlang:monotonic_time(millisecond),
    New = [{{action, A}, maps:get(matched, ?NIF:action_metrics(R), 0)} || {A, R} <- maps:to_list(Installed)]
        ++ [{{rule, Id}, maps:get(matched, ?NIF:rule_metrics(R), 0)} || {Id, {_, R}} <- maps:to_list(St#st.rules)],
    St#st{samples = lists:foldl(fun({K, M}, Acc) ->
                                        case maps:is_key(K, Acc) of
                                            true -> Acc;
                                            false -> Acc#{K => [{Now, M}]}
                                        end
                                end, St#st.samples, New)}.

is_sync(ActionId, St) ->
    case maps:find(ActionId, St#st.acts) of
        {ok, {_, #{<<"parameters">> := #{<<"query_mode">> := <<"sync">>}}}} -> true;
        _ -> false
    end.

%% ---- rates of `matched' (EMQX's rate, rate_last5m, rate_max) ---------------------

sample_rates(St) ->
    Now = erlang:monotonic_time(millisecond),
    Keys = [{action, A, R} || {{action_res, A}, R} <- ets:match_object(?TAB, {{action_res, '_'}, '_'})]
        ++ [{rule, Id, R} || {Id, {_, R}} <- maps:to_list(St#st.rules)],
    Samples = lists:foldl(
                fun({Kind, Id, Res}, Acc) ->
                        Matched = case Kind of
                                      action -> maps:get(matched, ?NIF:action_metrics(Res), 0);
                                      rule -> maps:get(matched, ?NIF:rule_metrics(Res), 0)
                                  end,
                        Key = {Kind, Id},
                        Old = maps:get(Key, St#st.samples, []),
                        %% keep five minutes of samples (plus the one that starts the window)
                        New = [{Now, Matched} | lists:takewhile(fun({T, _}) -> Now - T =< 300000 end, Old)],
                        ets:insert(?TAB, {{rate, Key}, rate_of(New, rates(Key))}),
                        Acc#{Key => New}
                end, #{}, Keys),
    St#st{samples = Samples}.

rate_of([{T1, M1}, {T0, M0} | _] = S, #{rate_max := Max}) ->
    Rate = per_s(M1 - M0, T1 - T0),
    {TF, MF} = lists:last(S),
    #{rate => Rate, rate_last5m => per_s(M1 - MF, T1 - TF), rate_max => max(Max, Rate)};
rate_of(_, Old) ->
    Old.

per_s(D, Ms) when Ms > 0, D >= 0 -> round(D * 1000 / Ms * 100) / 100;
per_s(_, _) -> 0.0.

%% ---- cluster -----------------------------------------------------------------

%% at start: the newest snapshot among the connected nodes running the plugin
newest_of_peers(Cfg) ->
    Theirs = [C || {ok, C} <- erpc:multicall(nodes(), ?MODULE, snapshot, [], 5000), is_map(C)],
    lists:foldl(fun(C, Best) ->
                        case maps:get(<<"version">>, C) > maps:get(<<"version">>, Best) of
                            true -> C;
                            false -> Best
                        end
                end, Cfg, Theirs).

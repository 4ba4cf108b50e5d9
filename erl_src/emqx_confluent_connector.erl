%% @doc One connector and its actions: health checks (each on a dirty I/O
%% scheduler, bounded by health_check_timeout), actions installed once the
%% connector is connected and failed installs retried, statuses reported by
%% EMQX's rules (emqx_confluent_status). Sending does not pass through this
%% process: callers take the action resource (action/2) and call the NIF
%% directly.
%%
%% The connector is checked every health_check_interval of its own
%% resource_opts; each action, and the install of one not installed yet,
%% every health_check_interval of the action's, bounded by the action's
%% health_check_timeout (the connector's when absent), as EMQX checks its
%% channels; actions waiting for the connector are installed as soon as it
%% connects. A round of the checks due runs in a worker process, so status
%% reads, adds and removals are answered while Kafka is slow to answer a
%% check; its results apply to the actions it checked (one removed or
%% replaced meanwhile keeps what it has). Installs and removals stay in this
%% process, one at a time, so an action's name never has two resources at
%% once (a disk-mode action owns its buffer directory); adding an action
%% checks that action alone.
-module(emqx_confluent_connector).
-behaviour(gen_server).

-export([start_link/2, start_link/3, stop/1, status/1, add_action/3, remove_action/2, action_status/2,
         action/2, check_now/1]).
-export([init/1, handle_call/3, handle_cast/2, handle_info/2, terminate/2]).

-define(NIF, emqx_confluent_nif).

-record(action, {conf :: map(), res :: undefined | emqx_confluent_nif:action(),
                 install = not_installed :: not_installed | {install_failed, binary()} | installed,
                 check = pending :: emqx_confluent_status:check(),
                 interval :: pos_integer(), timeout :: pos_integer() | infinity,
                 due = 0 :: integer()}). %% monotonic ms of its next check or install

-record(st, {name :: binary(), conf :: map(), conn :: emqx_confluent_nif:connector(),
             started = false :: boolean(), check = pending :: emqx_confluent_status:check(),
             interval :: pos_integer(), timeout :: pos_integer() | infinity,
             actions = #{} :: #{binary() => #action{}}, timer :: reference() | undefined,
             owner :: pid() | undefined, tab :: ets:tid() | atom() | undefined,
             notified = #{} :: #{binary() => emqx_confluent_nif:action()},
             %% the round of checks running, the check_now callers it answers,
             %% and those who asked during it (answered after the next round)
             round :: undefined | {pid(), reference(), All :: boolean(), Conn :: boolean()},
             waiting = [] :: [gen_server:from()], next = [] :: [gen_server:from()],
             due = 0 :: integer()}). %% monotonic ms of the connector's next check

%% @doc Starts the connector process; a configuration the NIF refuses is
%% returned as `{error, #{message := <<"field.path: why">>}}'.
start_link(Name, Conf) -> start_link(Name, Conf, #{}).

%% @doc Opts: `owner' receives `{ec_connector_installed, Name, #{ActionName =>
%% Resource}}' whenever the set of installed actions changes; `tab' (a public
%% ETS table) gets `{{connector, Name}, Status}' and `{{action, ActionName},
%% Status}' rows after every check, so readers never wait on this process.
start_link(Name, Conf, Opts) ->
    gen_server:start_link(?MODULE, {Name, Conf, Opts}, []).

stop(Pid) -> gen_server:stop(Pid).

%% @doc `#{status := connected | connecting | disconnected, status_reason => Bin}'.
status(Pid) -> gen_server:call(Pid, status, infinity).

add_action(Pid, Name, Conf) -> gen_server:call(Pid, {add_action, Name, Conf}, infinity).
remove_action(Pid, Name) -> gen_server:call(Pid, {remove_action, Name}, infinity).
action_status(Pid, Name) -> gen_server:call(Pid, {action_status, Name}, infinity).

%% @doc The installed action resource, for sending.
action(Pid, Name) -> gen_server:call(Pid, {action, Name}, infinity).

%% @doc Runs the health checks now (tests, and after configuration changes).
check_now(Pid) -> gen_server:call(Pid, check_now, infinity).

init({Name, Conf, Opts}) ->
    case ?NIF:connector_new(Conf) of
        {ok, Conn} ->
            {Interval, Timeout} = check_opts(Conf, 60000),
            St = #st{name = Name, conf = Conf, conn = Conn,
                     owner = maps:get(owner, Opts, undefined), tab = maps:get(tab, Opts, undefined),
                     interval = Interval, timeout = Timeout},
            {ok, publish(start_round(St, true))}; %% the first round right after start
        {error, E} ->
            {stop, {config, E}}
    end.

handle_call(status, _From, St) ->
    {reply, format(emqx_confluent_status:connector(St#st.started, St#st.check)), St};
handle_call({add_action, Name, Conf}, _From, St) ->
    %% one that had the name goes first (its resource destroyed)
    _ = [destroy(Old) || {ok, Old} <- [maps:find(Name, St#st.actions)]],
    A = install(new_action(Conf, St), St),
    Acts = (St#st.actions)#{Name => A#action{due = now_ms() + A#action.interval}},
    {reply, ok, publish(arm(St#st{actions = Acts}))};
handle_call({remove_action, Name}, _From, St) ->
    case maps:take(Name, St#st.actions) of
        {A, Rest} ->
            destroy(A),
            St#st.tab =/= undefined andalso ets:delete(St#st.tab, {action, Name}),
            {reply, ok, publish(St#st{actions = Rest})};
        error ->
            {reply, {error, not_found}, St}
    end;
handle_call({action_status, Name}, _From, St) ->
    {reply, action_status_of(Name, St), St};
handle_call({action, Name}, _From, St) ->
    case maps:find(Name, St#st.actions) of
        {ok, #action{res = Res, install = installed}} -> {reply, {ok, Res}, St};
        {ok, _} -> {reply, {error, not_installed}, St};
        error -> {reply, {error, not_found}, St}
    end;
handle_call(check_now, From, #st{round = undefined} = St) ->
    {noreply, start_round(St#st{waiting = [From]}, true)};
handle_call(check_now, From, St) ->
    {noreply, St#st{next = [From | St#st.next]}}.

handle_cast(_Msg, St) -> {noreply, St}.

handle_info(check, #st{round = undefined} = St) ->
    {noreply, start_round(St#st{timer = undefined}, false)};
handle_info(check, St) ->
    {noreply, St#st{timer = undefined}}; %% the next is set when the running round ends
handle_info({round_done, Pid, Result}, #st{round = {Pid, MRef, _, _}} = St) ->
    erlang:demonitor(MRef, [flush]),
    {noreply, end_round(Result, St)};
handle_info({'DOWN', MRef, process, Pid, Why}, #st{round = {Pid, MRef, _, _}} = St) ->
    %% the round itself failed (the checks in it are bounded and caught):
    %% the connector's check carries the reason, the actions keep theirs
    {noreply, end_round({{error, reason(Why)}, []}, St)};
handle_info(_Other, St) ->
    {noreply, St}.

terminate(_Reason, St) ->
    case St#st.round of
        {Pid, _, _, _} -> exit(Pid, kill); %% its checks end on their own, unanswered
        undefined -> ok
    end,
    lists:foreach(fun destroy/1, maps:values(St#st.actions)),
    St#st.tab =/= undefined andalso
        [ets:delete(St#st.tab, K) || K <- [{connector, St#st.name} |
                                          [{action, A} || A <- maps:keys(St#st.actions)]]],
    ok.

%% statuses into the table, and the installed set to the owner when it changed
publish(#st{tab = Tab, owner = Owner} = St) ->
    Tab =/= undefined andalso
        ets:insert(Tab, [{{connector, St#st.name},
                          format(emqx_confluent_status:connector(St#st.started, St#st.check))} |
                         [{{action, A}, action_status_of(A, St)} || A <- maps:keys(St#st.actions)]]),
    Installed = maps:fold(fun(A, #action{install = installed, res = Res}, Acc) -> Acc#{A => Res};
                             (_, _, Acc) -> Acc
                          end, #{}, St#st.actions),
    case Installed =:= St#st.notified orelse Owner =:= undefined of
        true -> St#st{notified = Installed};
        false ->
            Owner ! {ec_connector_installed, St#st.name, Installed},
            St#st{notified = Installed}
    end.

%% ---- internals -------------------------------------------------------------

%% A round of checks in a worker: the connector's when due (All: everything
%% is due), then, when that leaves it connected, each installed action's that
%% is due, as the actions were at the round's start.
start_round(St, All) ->
    _ = St#st.timer =/= undefined andalso erlang:cancel_timer(St#st.timer),
    Self = self(),
    Now = now_ms(),
    #st{conn = Conn, timeout = T, started = Started, check = Last} = St,
    ConnDue = All orelse Now >= St#st.due,
    Due = [{N, Res, AT} || {N, #action{install = installed, res = Res, due = D, timeout = AT}}
                               <- maps:to_list(St#st.actions), All orelse Now >= D],
    {Pid, MRef} =
        spawn_monitor(fun() ->
                              Check = case ConnDue of
                                          true -> bounded(fun() -> ?NIF:connector_health(Conn) end, T);
                                          false -> Last
                                      end,
                              Checks = case conn_status(Started orelse Check =:= ok, Check) of
                                           connected ->
                                               [{N, Res, bounded(fun() -> ?NIF:action_health(Res) end, AT)}
                                                || {N, Res, AT} <- Due];
                                           _ ->
                                               []
                                       end,
                              Self ! {round_done, self(), {Check, Checks}}
                      end),
    St#st{round = {Pid, MRef, All, ConnDue}, timer = undefined}.

%% A round's results applied to the actions it checked that are still there
%% with the same resource; each action that was due and is not installed (or
%% any not installed, when the connector has just connected) is installed now
%% when the connector is connected, and its next turn set; the
%% callers answered, the next round set for the earliest turn (at once for
%% those who asked during this one).
end_round({Check, Checks}, #st{round = {_, _, All, ConnDue}} = St0) ->
    Now = now_ms(),
    St = case ConnDue of
             true -> St0#st{check = Check, started = St0#st.started orelse Check =:= ok,
                            due = Now + St0#st.interval};
             false -> St0
         end,
    Checked = lists:foldl(fun({N, Res, C}, Acc) ->
                                  case maps:find(N, Acc) of
                                      {ok, #action{res = Res, install = installed} = A} ->
                                          Acc#{N => A#action{check = C}};
                                      _ ->
                                          Acc
                                  end
                          end, St#st.actions, Checks),
    St1 = St#st{actions = Checked, round = undefined},
    %% actions waiting for the connector are installed as soon as it connects
    Up = conn_status(St0) =/= connected andalso conn_status(St1) =:= connected,
    Acts = maps:map(fun(_, #action{due = D, interval = I, install = Inst} = A)
                          when All; Now >= D; Up andalso Inst =/= installed ->
                            (install(A, St1))#action{due = Now + I};
                       (_, A) ->
                            A
                    end, Checked),
    St2 = publish(St1#st{actions = Acts}),
    [gen_server:reply(From, ok) || From <- St2#st.waiting],
    case St2#st.next of
        [] -> arm(St2#st{waiting = []});
        Waiting -> start_round(St2#st{waiting = Waiting, next = []}, true)
    end.

%% the timer set for the earliest turn (unless a round runs: it sets it)
arm(#st{round = undefined} = St) ->
    _ = St#st.timer =/= undefined andalso erlang:cancel_timer(St#st.timer),
    Next = lists:min([St#st.due | [D || #action{due = D} <- maps:values(St#st.actions)]]),
    St#st{timer = erlang:send_after(max(0, Next - now_ms()), self(), check)};
arm(St) ->
    St.

conn_status(St) ->
    conn_status(St#st.started, St#st.check).

conn_status(Started, Check) ->
    element(1, emqx_confluent_status:connector(Started, Check)).

%% an action from its configuration: its own check interval and timeout
new_action(Conf, St) ->
    {Interval, Timeout} = check_opts(Conf, St#st.timeout),
    #action{conf = Conf, interval = Interval, timeout = Timeout}.

%% {health_check_interval, health_check_timeout} of a connector's or an
%% action's resource_opts in ms (15 s and DefaultTimeout when absent or not a
%% duration: the API's validation refuses those first)
check_opts(Conf, DefaultTimeout) ->
    RO = maps:get(<<"resource_opts">>, Conf, #{}),
    Ms = fun(Key) ->
                 case maps:find(Key, RO) of
                     {ok, D} -> try duration_ms(D) catch error:_ -> undefined end;
                     error -> undefined
                 end
         end,
    {case Ms(<<"health_check_interval">>) of
         I when is_integer(I) -> I;
         _ -> 15000
     end,
     case Ms(<<"health_check_timeout">>) of
         undefined -> DefaultTimeout;
         T -> T
     end}.

now_ms() -> erlang:monotonic_time(millisecond).

%% an action not installed, installed when the connector is connected (a
%% fixed topic that Kafka does not know fails the install)
install(#action{install = installed} = A, _St) ->
    A;
install(#action{conf = Conf} = A, St) ->
    case conn_status(St) of
        connected ->
            case ?NIF:action_new(St#st.conf, Conf) of
                {ok, Res} ->
                    case bounded(fun() -> ?NIF:action_health(Res) end, A#action.timeout) of
                        ok ->
                            A#action{res = Res, install = installed, check = ok};
                        Failed ->
                            ok = ?NIF:action_destroy(Res),
                            A#action{res = undefined, install = {install_failed, reason(Failed)}}
                    end;
                {error, E} ->
                    A#action{install = {install_failed, reason({error, E})}}
            end;
        _ ->
            A
    end.

destroy(#action{res = undefined}) -> ok;
destroy(#action{res = Res}) -> ?NIF:action_destroy(Res).

action_status_of(Name, St) ->
    case maps:find(Name, St#st.actions) of
        {ok, #action{install = Inst, check = Check}} ->
            format(emqx_confluent_status:action(conn_status(St), Inst, Check));
        error ->
            format({disconnected, <<"Not installed">>})
    end.

%% runs a blocking health check in a helper process, at most Timeout ms
bounded(Fun, Timeout) ->
    {Pid, Ref} = spawn_monitor(fun() -> exit({result, Fun()}) end),
    receive
        {'DOWN', Ref, process, Pid, {result, ok}} -> ok;
        {'DOWN', Ref, process, Pid, {result, {error, E}}} -> {error, reason({error, E})};
        {'DOWN', Ref, process, Pid, Other} -> {error, iolist_to_binary(io_lib:format("~0p", [Other]))}
    after Timeout ->
            exit(Pid, kill),
            timeout
    end.

reason({error, #{message := M}}) -> M;
reason({error, B}) when is_binary(B) -> B;
reason(timeout) -> <<"resource_health_check_timed_out">>;
reason(Other) -> iolist_to_binary(io_lib:format("~0p", [Other])).

format({Status, undefined}) -> #{status => Status};
format({Status, Reason}) -> #{status => Status, status_reason => Reason}.

%% EMQX durations ("15s", "1m30s", 500), parsed by the same C code as the
%% rest of the configuration; "infinity" for health_check_timeout
duration_ms(<<"infinity">>) -> infinity;
duration_ms(infinity) -> infinity;
duration_ms(D) ->
    case ?NIF:duration_ms(D) of
        {ok, Ms} -> max(Ms, 1);
        error -> error({bad_duration, D})
    end.

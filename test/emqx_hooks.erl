%% @doc A stand-in for EMQX's hook registry with the part of emqx_hooks' API
%% the plugin uses (put/3, del/2; emqx-plugin.md §5.1), so a test can check
%% what the application registers on start and removes on stop. Only
%% "present" while start_fake/0 runs the registered process, as in EMQX.
-module(emqx_hooks).

-export([put/3, del/2, start_fake/0, stop_fake/0, registered/0]).

start_fake() ->
    Pid = spawn(fun() -> loop([]) end),
    true = register(emqx_hooks, Pid),
    {ok, Pid}.

stop_fake() ->
    case whereis(emqx_hooks) of
        undefined -> ok;
        Pid -> exit(Pid, kill), ok
    end.

registered() -> rpc({get}).

put(HookPoint, {M, F, A} = MFA, Priority) when is_atom(M), is_atom(F), is_list(A), is_integer(Priority) ->
    rpc({put, HookPoint, MFA, Priority}).

del(HookPoint, {M, F}) -> rpc({del, HookPoint, M, F}).

rpc(Req) ->
    Ref = make_ref(),
    emqx_hooks ! {Req, self(), Ref},
    receive {Ref, R} -> R after 5000 -> error(timeout) end.

loop(Hooks) ->
    receive
        {{get}, From, Ref} -> From ! {Ref, Hooks}, loop(Hooks);
        {{put, HP, {M, F, _} = MFA, P}, From, Ref} ->
            New = [H || {HP1, {M1, F1, _}, _} = H <- Hooks, {HP1, M1, F1} =/= {HP, M, F}] ++ [{HP, MFA, P}],
            From ! {Ref, ok}, loop(New);
        {{del, HP, M, F}, From, Ref} ->
            From ! {Ref, ok},
            loop([H || {HP1, {M1, F1, _}, _} = H <- Hooks, {HP1, M1, F1} =/= {HP, M, F}])
    end.

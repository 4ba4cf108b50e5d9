%% @doc The EMQX side: registers the `message.publish' hook when EMQX is
%% running (emqx_hooks present), removes it on stop. The callback hands the
%% message to the C pipeline in one NIF call and returns `{ok, Msg}'
%% unchanged: this plugin never alters or blocks publishing. `$SYS' messages
%% are skipped, as EMQX's rule engine does by default. Standalone (no EMQX)
%% nothing is registered.
-module(emqx_confluent_hooks).

-include("emqx_message.hrl").

-export([register/0, unregister/0, registered/0, set_events/1, events/0, on_message_publish/1]).

%% just below EMQX's own rule engine (900), above bridges' local_topic (870)
-define(PRIORITY, 890).
-define(HOOK, {?MODULE, on_message_publish, []}).

-spec register() -> boolean().
register() ->
    case emqx_running() of
        true ->
            _ = emqx_hooks:put('message.publish', ?HOOK, ?PRIORITY),
            persistent_term:put({?MODULE, registered}, true),
            true;
        false ->
            false
    end.

unregister() ->
    case persistent_term:get({?MODULE, registered}, false) of
        true ->
            set_events([]),
            persistent_term:erase({?MODULE, registered}),
            _ = emqx_hooks:del('message.publish', {?MODULE, on_message_publish}),
            ok;
        false ->
            ok
    end.

%% @doc Registers the hooks of exactly these events (emqx_confluent_events),
%% removing the others: only what enabled `$events/...' rules need.
-spec set_events([atom()]) -> ok.
set_events(Events) ->
    case persistent_term:get({?MODULE, registered}, false) of
        true ->
            Old = events(),
            [begin
                 {HP, F} = emqx_confluent_events:hook(E),
                 _ = emqx_hooks:put(HP, {emqx_confluent_events, F, []}, ?PRIORITY)
             end || E <- Events -- Old],
            [begin
                 {HP, F} = emqx_confluent_events:hook(E),
                 _ = emqx_hooks:del(HP, {emqx_confluent_events, F})
             end || E <- Old -- Events],
            persistent_term:put({?MODULE, events}, Events),
            ok;
        false ->
            ok
    end.

%% @doc The event hooks registered now.
events() -> persistent_term:get({?MODULE, events}, []).

%% @doc Whether the hooks are in place (false when standalone).
registered() -> persistent_term:get({?MODULE, registered}, false).

emqx_running() ->
    code:ensure_loaded(emqx_hooks) =:= {module, emqx_hooks}
        andalso erlang:function_exported(emqx_hooks, put, 3)
        andalso is_pid(whereis(emqx_hooks)).

on_message_publish(#message{flags = #{sys := true}} = Msg) ->
    {ok, Msg};
on_message_publish(Msg) ->
    case emqx_confluent_mgr:pipeline() of
        {P, Node, false} -> _ = emqx_confluent_nif:pipeline_publish(P, Msg, Node);
        {P, Node, true} -> publish_sync(P, Msg, Node);
        undefined -> ok
    end,
    {ok, Msg}.

%% Sync actions (sink-behaviour.md §7): the publisher waits for Kafka's
%% acknowledgement of each of their records, up to sync_query_timeout. The
%% replies go to a helper process that ends when all arrived or the time is
%% up, so a late reply never lands in the publisher's mailbox; the record
%% itself stays buffered and may still be delivered (and counted) later.
publish_sync(P, Msg, Node) ->
    {Helper, MRef} = spawn_monitor(fun() ->
                                           receive {wait, Waits} -> wait_replies(Waits)
                                           after 60000 -> ok
                                           end
                                   end),
    case emqx_confluent_nif:pipeline_publish(P, Msg, Node, Helper) of
        {_, Waits} -> Helper ! {wait, Waits};
        _ -> exit(Helper, kill)
    end,
    receive {'DOWN', MRef, process, Helper, _} -> ok end.

wait_replies(Waits) ->
    Now = erlang:monotonic_time(millisecond),
    wait_replies([{Ref, Now + T} || {Ref, T} <- Waits], ok).

wait_replies([], _) -> ok;
wait_replies([{Ref, Deadline} | Rest], _) ->
    Left = max(0, Deadline - erlang:monotonic_time(millisecond)),
    receive
        {ec_action_reply, Ref, _, _, _} -> wait_replies(Rest, ok);
        {ec_action_reply, Ref, _} -> wait_replies(Rest, ok)
    after Left -> wait_replies(Rest, timeout)
    end.

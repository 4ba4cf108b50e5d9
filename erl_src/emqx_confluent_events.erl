%% @doc `$events/...' rules inside EMQX: which EMQX hooks the enabled rules
%% need (from their FROM topics, 5.10 and legacy names, wildcards allowed),
%% and the hook callbacks that turn EMQX's hook arguments into the event's
%% columns (rule-sql.md §4.3, emqx-plugin.md §5.2) and run them through the
%% pipeline. Hooks are registered only while some enabled rule needs them
%% (emqx_confluent_hooks:set_events/1). Every callback returns what lets EMQX
%% carry on unchanged.
-module(emqx_confluent_events).

-include("emqx_message.hrl").

-export([needed/1, hook/1, columns/2]).
-export([on_client_connected/2, on_client_disconnected/3, on_client_connack/3,
         on_client_check_authz_complete/5, on_client_check_authn_complete/2,
         on_session_subscribed/3, on_session_unsubscribed/3, on_message_delivered/2,
         on_message_acked/2, on_message_dropped/3, on_delivery_dropped/3]).

%% event name, 5.10 topic, legacy topic
-define(EVENTS,
        [{'client.connected', <<"$events/client/connected">>, <<"$events/client_connected">>},
         {'client.disconnected', <<"$events/client/disconnected">>, <<"$events/client_disconnected">>},
         {'client.connack', <<"$events/client/connack">>, <<"$events/client_connack">>},
         {'client.check_authz_complete', <<"$events/auth/check_authz_complete">>,
          <<"$events/client_check_authz_complete">>},
         {'client.check_authn_complete', <<"$events/auth/check_authn_complete">>,
          <<"$events/client_check_authn_complete">>},
         {'session.subscribed', <<"$events/session/subscribed">>, <<"$events/session_subscribed">>},
         {'session.unsubscribed', <<"$events/session/unsubscribed">>, <<"$events/session_unsubscribed">>},
         {'message.delivered', <<"$events/message/delivered">>, <<"$events/message_delivered">>},
         {'message.acked', <<"$events/message/acked">>, <<"$events/message_acked">>},
         {'message.dropped', <<"$events/message/dropped">>, <<"$events/message_dropped">>},
         {'delivery.dropped', <<"$events/message/delivery_dropped">>, <<"$events/delivery_dropped">>}]).

%% @doc The events some FROM topic of the list matches (as a topic filter).
-spec needed([binary()]) -> [atom()].
needed(Froms) ->
    Filters = [F || F <- Froms, binary:match(F, <<"$events/">>) =:= {0, 8}],
    [E || {E, New, Old} <- ?EVENTS,
          lists:any(fun(F) -> match(F, New) orelse match(F, Old) end, Filters)].

%% MQTT topic filter matching ('+' one level, '#' the rest)
match(Filter, Topic) ->
    m(binary:split(Filter, <<"/">>, [global]), binary:split(Topic, <<"/">>, [global])).
m([<<"#">>], _) -> true;
m([<<"+">> | F], [_ | T]) -> m(F, T);
m([X | F], [X | T]) -> m(F, T);
m([], []) -> true;
m(_, _) -> false.

%% @doc The hook point, callback and priority for an event.
hook('client.connected') -> {'client.connected', on_client_connected};
hook('client.disconnected') -> {'client.disconnected', on_client_disconnected};
hook('client.connack') -> {'client.connack', on_client_connack};
hook('client.check_authz_complete') -> {'client.check_authz_complete', on_client_check_authz_complete};
hook('client.check_authn_complete') -> {'client.check_authn_complete', on_client_check_authn_complete};
hook('session.subscribed') -> {'session.subscribed', on_session_subscribed};
hook('session.unsubscribed') -> {'session.unsubscribed', on_session_unsubscribed};
hook('message.delivered') -> {'message.delivered', on_message_delivered};
hook('message.acked') -> {'message.acked', on_message_acked};
hook('message.dropped') -> {'message.dropped', on_message_dropped};
hook('delivery.dropped') -> {'delivery.dropped', on_delivery_dropped}.

%% ---- callbacks (EMQX's hook arguments) --------------------------------------------

on_client_connected(ClientInfo, ConnInfo) ->
    run(columns('client.connected', {ClientInfo, ConnInfo})).

on_client_disconnected(ClientInfo, Reason, ConnInfo) ->
    run(columns('client.disconnected', {ClientInfo, Reason, ConnInfo})).

on_client_connack(ConnInfo, Reason, Props) ->
    run(columns('client.connack', {ConnInfo, Reason})),
    {ok, Props}.

on_client_check_authz_complete(ClientInfo, Action, Topic, Result, Source) ->
    run(columns('client.check_authz_complete', {ClientInfo, Action, Topic, Result, Source})).

on_client_check_authn_complete(ClientInfo, Result) ->
    run(columns('client.check_authn_complete', {ClientInfo, Result})).

on_session_subscribed(ClientInfo, Topic, SubOpts) ->
    run(columns('session.subscribed', {ClientInfo, Topic, SubOpts})).

on_session_unsubscribed(ClientInfo, Topic, SubOpts) ->
    run(columns('session.unsubscribed', {ClientInfo, Topic, SubOpts})).

on_message_delivered(ClientInfo, Msg) ->
    not_sys(Msg) andalso run(columns('message.delivered', {ClientInfo, Msg})),
    {ok, Msg}.

on_message_acked(ClientInfo, Msg) ->
    not_sys(Msg) andalso run(columns('message.acked', {ClientInfo, Msg})).

on_message_dropped(Msg, _Info, Reason) ->
    not_sys(Msg) andalso run(columns('message.dropped', {Msg, Reason})).

on_delivery_dropped(ClientInfo, Msg, Reason) ->
    not_sys(Msg) andalso run(columns('delivery.dropped', {ClientInfo, Msg, Reason})).

not_sys(#message{flags = #{sys := true}}) -> false;
not_sys(_) -> true.

run(Cols) ->
    case emqx_confluent_mgr:pipeline() of
        {P, _, _} -> _ = emqx_confluent_nif:pipeline_event(P, Cols);
        undefined -> ok
    end,
    ok.

%% ---- columns ---------------------------------------------------------------------

%% @doc The event's column map (rule-sql.md §4.3), atom keys.
columns(Event, Args) ->
    maps:merge(cols(Event, Args), #{event => atom_to_binary(Event), timestamp => now_ms(),
                                    node => atom_to_binary(node())}).

cols('client.connected', {CI, Conn}) ->
    (conn_cols(CI, Conn))#{keepalive => g(keepalive, Conn, 0), clean_start => g(clean_start, Conn, true),
                           receive_maximum => g(receive_maximum, Conn, 0),
                           expiry_interval => g(expiry_interval, Conn, 0) div 1000,
                           is_bridge => g(is_bridge, CI, false), conn_props => props(g(conn_props, Conn, #{})),
                           connected_at => g(connected_at, Conn, now_ms()), client_attrs => attrs(CI)};
cols('client.disconnected', {CI, Reason, Conn}) ->
    (conn_cols(CI, Conn))#{reason => reason(Reason), disconn_props => props(g(disconn_props, Conn, #{})),
                           disconnected_at => g(disconnected_at, Conn, now_ms()),
                           connected_at => g(connected_at, Conn, undefined), client_attrs => attrs(CI)};
cols('client.connack', {Conn, Reason}) ->
    (conn_cols(#{}, Conn))#{reason_code => reason(Reason), clean_start => g(clean_start, Conn, true),
                            keepalive => g(keepalive, Conn, 0),
                            expiry_interval => g(expiry_interval, Conn, 0) div 1000,
                            connected_at => g(connected_at, Conn, now_ms()),
                            conn_props => props(g(conn_props, Conn, #{}))};
cols('client.check_authz_complete', {CI, Action, Topic, Result, Source}) ->
    #{clientid => g(clientid, CI, undefined), username => g(username, CI, undefined),
      peerhost => ntoa(g(peerhost, CI, undefined)), peername => peername(CI),
      topic => Topic, action => action(Action), authz_source => Source, result => Result,
      client_attrs => attrs(CI)};
cols('client.check_authn_complete', {CI, Result}) ->
    #{clientid => g(clientid, CI, undefined), username => g(username, CI, undefined),
      peername => peername(CI), reason_code => reason(g(reason_code, Result, success)),
      is_anonymous => g(is_anonymous, Result, false), is_superuser => g(is_superuser, Result, false),
      client_attrs => attrs(CI)};
cols('session.subscribed', {CI, Topic, SubOpts}) ->
    (sub_cols(CI, Topic, SubOpts))#{sub_props => props(g(sub_props, SubOpts, #{}))};
cols('session.unsubscribed', {CI, Topic, SubOpts}) ->
    (sub_cols(CI, Topic, SubOpts))#{unsub_props => props(g(unsub_props, SubOpts, #{}))};
cols('message.delivered', {CI, Msg}) ->
    delivered_cols(CI, Msg);
cols('message.acked', {CI, Msg}) ->
    (delivered_cols(CI, Msg))#{puback_props => props(g(puback_props, Msg#message.headers, #{}))};
cols('message.dropped', {Msg, Reason}) ->
    (msg_cols(Msg))#{reason => reason(Reason), clientid => Msg#message.from,
                     username => g(username, Msg#message.headers, undefined),
                     peerhost => ntoa(g(peerhost, Msg#message.headers, undefined))};
cols('delivery.dropped', {CI, Msg, Reason}) ->
    (delivered_cols(CI, Msg))#{reason => reason(Reason)}.

conn_cols(CI, Conn) ->
    #{clientid => g(clientid, Conn, g(clientid, CI, undefined)),
      username => g(username, Conn, g(username, CI, undefined)),
      mountpoint => g(mountpoint, CI, undefined),
      peername => addr(g(peername, Conn, undefined)), sockname => addr(g(sockname, Conn, undefined)),
      proto_name => g(proto_name, Conn, <<"MQTT">>), proto_ver => g(proto_ver, Conn, 4)}.

sub_cols(CI, Topic, SubOpts) ->
    #{clientid => g(clientid, CI, undefined), username => g(username, CI, undefined),
      peerhost => ntoa(g(peerhost, CI, undefined)), peername => peername(CI),
      topic => share(Topic, SubOpts), qos => g(qos, SubOpts, 0), client_attrs => attrs(CI)}.

msg_cols(#message{} = M) ->
    #{id => binary:encode_hex(M#message.id), payload => iolist_to_binary(M#message.payload),
      topic => M#message.topic, qos => M#message.qos, flags => M#message.flags,
      pub_props => props(g(properties, M#message.headers, #{})),
      publish_received_at => M#message.timestamp}.

delivered_cols(CI, M) ->
    (msg_cols(M))#{from_clientid => M#message.from,
                   from_username => g(username, M#message.headers, undefined),
                   clientid => g(clientid, CI, undefined), username => g(username, CI, undefined),
                   peerhost => ntoa(g(peerhost, CI, undefined)), peername => peername(CI)}.

g(K, M, D) when is_map(M) -> maps:get(K, M, D);
g(_, _, D) -> D.

now_ms() -> erlang:system_time(millisecond).

attrs(CI) -> g(client_attrs, CI, #{}).

ntoa(undefined) -> undefined;
ntoa(Ip) when is_tuple(Ip) ->
    case inet:ntoa(Ip) of
        {error, _} -> undefined;
        S -> list_to_binary(S)
    end;
ntoa(Other) -> Other.

addr({Ip, Port}) when is_tuple(Ip) -> iolist_to_binary([ntoa(Ip), ":", integer_to_list(Port)]);
addr(_) -> undefined.

peername(CI) ->
    case {g(peername, CI, undefined), g(peerhost, CI, undefined)} of
        {{_, _} = P, _} -> addr(P);
        {_, Ip} when is_tuple(Ip) -> ntoa(Ip);
        _ -> undefined
    end.

%% a shared subscription shows as $share/Group/Topic
share(Topic, #{share := Group}) when is_binary(Group) -> <<"$share/", Group/binary, "/", Topic/binary>>;
share(Topic, _) -> Topic.

action(#{action_type := T}) -> T;
action(A) -> A.

%% {shutdown, R} -> R; anything not an atom -> internal_error (EMQX's rule)
reason({shutdown, R}) when is_atom(R) -> R;
reason(R) when is_atom(R) -> R;
reason(R) when is_binary(R) -> R;
reason(_) -> internal_error.

%% EMQX's printable properties: User-Property as a map plus the pairs
props(P) when is_map(P) ->
    UP = maps:get('User-Property', P, []),
    Base = maps:from_list([{K, V} || {K, V} <- maps:to_list(maps:remove('User-Property', P)),
                                     not is_tuple(V)]),
    case UP of
        [] -> Base#{'User-Property' => #{}};
        _ -> Base#{'User-Property' => maps:from_list(UP),
                   'User-Property-Pairs' => [#{key => K, value => V} || {K, V} <- UP]}
    end;
props(_) -> #{}.

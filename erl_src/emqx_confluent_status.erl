%% @doc EMQX's status rules for connectors and actions (sink-behaviour.md §9)
%% as pure functions, so the resource process only feeds them facts.
-module(emqx_confluent_status).

-export([connector/2, action/3]).

-type status() :: connected | connecting | disconnected | stopped.
-type check() :: pending | ok | timeout | {error, binary()}.
-export_type([status/0, check/0]).

-define(TIMED_OUT, <<"resource_health_check_timed_out">>).

%% @doc Connector status from whether a health check ever succeeded since the
%% start (`Started') and the latest check. After a successful start a failing
%% check reports `connecting', never `disconnected' (EMQX keeps the buffers).
-spec connector(Started :: boolean(), check()) -> {status(), binary() | undefined}.
connector(_, pending) -> {connecting, undefined};
connector(_, ok) -> {connected, undefined};
connector(_, timeout) -> {disconnected, ?TIMED_OUT};
connector(true, {error, Reason}) -> {connecting, Reason};
connector(false, {error, Reason}) -> {disconnected, Reason}.

%% @doc Action status from its connector's status, whether it is installed
%% (`not_installed', `{install_failed, Reason}', `installed') and its latest check.
-spec action(status(), not_installed | {install_failed, binary()} | installed, check()) ->
          {status(), binary() | undefined}.
action(stopped, _, _) -> {disconnected, <<"Not installed">>};
action(disconnected, _, _) -> {disconnected, <<"Resource not operational">>};
action(connecting, installed, _) -> {connecting, <<"resource_is_connecting">>};
action(connecting, _, _) -> {connecting, <<"resource_is_connecting">>};
action(connected, not_installed, _) -> {disconnected, <<"Not installed">>};
action(connected, {install_failed, Reason}, _) -> {disconnected, Reason};
action(connected, installed, pending) -> {connecting, undefined};
action(connected, installed, ok) -> {connected, undefined};
action(connected, installed, timeout) -> {connecting, ?TIMED_OUT};
action(connected, installed, {error, Reason}) -> {connecting, Reason}.

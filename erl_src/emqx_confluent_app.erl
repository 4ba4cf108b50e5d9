%% @doc OTP application callback of emqx_confluent. It starts the top
%% supervisor; inside EMQX the plugin hooks are registered by later modules,
%% and standalone (no EMQX) everything else works the same.
-module(emqx_confluent_app).
-behaviour(application).

-export([start/2, stop/1]).

start(_Type, _Args) ->
    emqx_confluent_sup:start_link().

stop(_State) ->
    ok.

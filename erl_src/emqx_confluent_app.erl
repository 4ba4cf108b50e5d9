%% @doc OTP application callback of emqx_confluent (an EMQX plugin, or a
%% standalone node). Start: the supervisor (registry, REST listener), then
%% the EMQX hooks if EMQX is running. Stop: hooks removed first.
%%
%% Settings (application env, or the environment variables named):
%%   data_dir  (EMQX_CONFLUENT_DATA_DIR)  where the configuration is kept;
%%             default <EMQX data_dir>/plugins/emqx_confluent inside EMQX,
%%             "data/emqx_confluent" standalone
%%   listen    (EMQX_CONFLUENT_LISTEN)    REST listener, default "127.0.0.1:18084"
%%   API keys: see emqx_confluent_auth.
-module(emqx_confluent_app).
-behaviour(application).

-emqx_plugin(?MODULE).

-export([start/2, prep_stop/1, stop/1, data_dir/0, listen/0, on_health_check/1]).

start(_Type, _Args) ->
    case emqx_confluent_sup:start_link() of
        {ok, Sup} ->
            _ = emqx_confluent_hooks:register(),
            %% the registry built its pipeline before the hooks existed
            emqx_confluent_mgr:refresh(),
            {ok, Sup};
        Other ->
            Other
    end.

prep_stop(State) ->
    emqx_confluent_hooks:unregister(),
    State.

stop(_State) ->
    ok.

%% @doc EMQX 5.9+ plugin health: the registry and the listener are up.
on_health_check(_Opts) ->
    case is_pid(whereis(emqx_confluent_mgr)) of
        true -> ok;
        false -> {error, <<"emqx_confluent registry is not running">>}
    end.

data_dir() ->
    setting("EMQX_CONFLUENT_DATA_DIR", data_dir, fun default_data_dir/0).

listen() ->
    setting("EMQX_CONFLUENT_LISTEN", listen, fun() -> "127.0.0.1:18084" end).

setting(Env, Key, Default) ->
    case os:getenv(Env) of
        V when is_list(V), V =/= "" -> V;
        _ ->
            case application:get_env(emqx_confluent, Key) of
                {ok, V} -> V;
                undefined -> Default()
            end
    end.

default_data_dir() ->
    case code:is_loaded(emqx) =/= false andalso erlang:function_exported(emqx, data_dir, 0) of
        true -> filename:join([emqx:data_dir(), "plugins", "emqx_confluent"]);
        false -> filename:join("data", "emqx_confluent")
    end.

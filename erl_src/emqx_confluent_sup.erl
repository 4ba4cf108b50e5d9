%% @doc Top supervisor: the OAuth token fetcher (producers created by the
%% registry may ask it for tokens at once), the registry
%% (emqx_confluent_mgr, which owns the connector processes) and the REST
%% listener. rest_for_one: the listener reads the registry's table, so it
%% restarts after it.
-module(emqx_confluent_sup).
-behaviour(supervisor).

-export([start_link/0, init/1, start_api/0]).

start_link() ->
    supervisor:start_link({local, ?MODULE}, ?MODULE, []).

init([]) ->
    Dir = emqx_confluent_app:data_dir(),
    case emqx_confluent_auth:init(Dir) of
        ok -> ok;
        {generated, File} ->
            logger:notice("emqx_confluent: generated a REST API key in ~s", [File])
    end,
    Mgr = #{id => emqx_confluent_mgr, start => {emqx_confluent_mgr, start_link, [#{data_dir => Dir}]},
            shutdown => 30000},
    Api = #{id => emqx_confluent_api, start => {?MODULE, start_api, []}, shutdown => 5000},
    OAuth = #{id => emqx_confluent_oauth, start => {emqx_confluent_oauth, start_link, []},
              shutdown => 5000},
    {ok, {#{strategy => rest_for_one, intensity => 10, period => 60}, [OAuth, Mgr, Api]}}.

%% the httpd service runs under inets' supervisor; a linked keeper process
%% ties its life to ours
start_api() ->
    Parent = self(),
    Pid = proc_lib:spawn_link(fun() ->
                                      process_flag(trap_exit, true),
                                      {ok, _} = emqx_confluent_api:start(emqx_confluent_app:listen()),
                                      Parent ! {api_started, self()},
                                      receive {'EXIT', _, _} -> emqx_confluent_api:stop() end
                              end),
    receive
        {api_started, Pid} -> {ok, Pid};
        {'EXIT', Pid, R} -> {error, R}
    after 10000 -> {error, api_start_timeout}
    end.

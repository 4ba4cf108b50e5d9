%% @doc Test helpers for the REST API: start the application on a free port
%% with known API keys, and call it over real HTTP (httpc).
-module(ec_api).

-export([start_app/1, stop_app/0, call/2, call/3, call/4, admin/0, viewer/0, url/1,
         conn_body/2, wait_status/3, delete_all/0]).

admin() -> {"admin", "admin-secret"}.
viewer() -> {"viewer", "viewer-secret"}.

%% @doc Starts emqx_confluent with its data in Dir.
start_app(Dir) ->
    application:load(emqx_confluent),
    ok = application:set_env(emqx_confluent, data_dir, Dir),
    ok = application:set_env(emqx_confluent, listen, "127.0.0.1:0"),
    {AK, AS} = admin(),
    {VK, VS} = viewer(),
    ok = application:set_env(emqx_confluent, api_keys, [{AK, AS, administrator}, {VK, VS, viewer}]),
    {ok, _} = application:ensure_all_started(emqx_confluent),
    ok.

stop_app() ->
    ok = application:stop(emqx_confluent).

url(Path) ->
    "http://127.0.0.1:" ++ integer_to_list(emqx_confluent_api:port()) ++ "/api/v5" ++ Path.

call(Method, Path) -> call(Method, Path, none).
call(Method, Path, Body) -> call(Method, Path, Body, admin()).

%% @doc {Status, DecodedJsonOrRawBody}; Auth is {Key, Secret}, none, or a raw header value.
call(Method, Path, Body, Auth) ->
    Headers = case Auth of
                  none -> [];
                  {K, S} -> [{"authorization", "Basic " ++ base64:encode_to_string(K ++ ":" ++ S)}];
                  Raw when is_list(Raw) -> [{"authorization", Raw}]
              end,
    Req = case Body of
              none when Method =:= put; Method =:= post -> {url(Path), Headers, "application/json", <<>>};
              none -> {url(Path), Headers};
              _ ->
                  Bin = case is_binary(Body) of
                            true -> Body;
                            false -> {ok, J} = emqx_confluent_nif:json_encode(Body), J
                        end,
                  {url(Path), Headers, "application/json", Bin}
          end,
    {ok, {{_, Status, _}, RespHeaders, RespBody}} =
        httpc:request(Method, Req, [{timeout, 60000}], [{body_format, binary}]),
    Decoded = case proplists:get_value("content-type", RespHeaders) of
                  "application/json" ++ _ ->
                      {ok, T} = emqx_confluent_nif:json_decode(RespBody),
                      T;
                  _ -> RespBody
              end,
    {Status, Decoded}.

%% @doc A connector create body for the test broker (confluent or plain).
conn_body(Kind, Name) ->
    C = maps:remove(<<"type">>, ec_test_util:connector_conf(Kind)),
    Type = maps:get(<<"type">>, ec_test_util:connector_conf(Kind)),
    C#{<<"type">> => Type, <<"name">> => Name,
       <<"resource_opts">> => #{<<"health_check_interval">> => <<"500ms">>,
                                <<"start_timeout">> => <<"10s">>}}.

%% @doc Deletes every rule, source, action and connector over REST (each
%% answering 204), dependants first: a case's clean slate.
delete_all() ->
    Cfg = emqx_confluent_mgr:snapshot(),
    [{204, _} = call(delete, "/" ++ Kind ++ "/" ++ uri_string:quote(binary_to_list(Id)))
     || Kind <- ["rules", "sources", "actions", "connectors"],
        Id <- maps:keys(maps:get(list_to_binary(Kind), Cfg, #{}))],
    ok.

%% @doc Polls GET Path until its status is Want.
wait_status(Path, Want, Timeout) ->
    ec_test_util:wait_until(fun() ->
                                    {200, #{<<"status">> := S}} = call(get, Path),
                                    S =:= Want
                            end, Timeout),
    {200, Obj} = call(get, Path),
    Obj.

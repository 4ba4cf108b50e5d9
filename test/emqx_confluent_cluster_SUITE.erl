%% @doc Nodes beyond the test node, started with OTP's peer module:
%%   - the package `make plugin' builds, unpacked into a fresh node's code
%%     path as EMQX does (emqx-plugin.md §3), starts and serves the API;
%%   - two nodes running the plugin: a change made through one node's API
%%     applies on the other, statuses and metrics list both nodes, and a node
%%     that was down gets the newest configuration when it comes back.
-module(emqx_confluent_cluster_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").
-include_lib("kernel/include/file.hrl").

-compile([export_all, nowarn_export_all]).

-import(ec_api, [call/2, call/3]).

all() -> [t_plugin_tarball, t_cluster_replication].

init_per_suite(Config) ->
    ok = ec_test_util:ensure_distributed("ec_ct_"),
    Config.

end_per_suite(_) -> ok.

keys_env() ->
    {AK, AS} = ec_api:admin(),
    [{api_keys, [{AK, AS, administrator}]}, {listen, "127.0.0.1:0"}].

start_peer(Name, CodePath, DataDir) -> start_peer(Name, CodePath, DataDir, keys_env()).
start_peer(Name, CodePath, DataDir, Env) ->
    {ok, Peer, Node} = peer:start_link(#{name => Name, args => ["-pa" | CodePath]}),
    ok = erpc:call(Node, application, load, [emqx_confluent]),
    [ok = erpc:call(Node, application, set_env, [emqx_confluent, K, V]) || {K, V} <- [{data_dir, DataDir} | Env]],
    {ok, _} = erpc:call(Node, application, ensure_all_started, [emqx_confluent], 30000),
    {Peer, Node}.

%% GET on another node's API
peer_call(Node, Method, Path, Body) -> peer_call(Node, Method, Path, Body, ec_api:admin()).
peer_call(Node, Method, Path, Body, {K, S}) ->
    Port = erpc:call(Node, emqx_confluent_api, port, []),
    Hdrs = [{"authorization", "Basic " ++ base64:encode_to_string(K ++ ":" ++ S)}],
    Url = "http://127.0.0.1:" ++ integer_to_list(Port) ++ "/api/v5" ++ Path,
    Req = case Body of
              none -> {Url, Hdrs};
              _ -> {ok, J} = emqx_confluent_nif:json_encode(Body), {Url, Hdrs, "application/json", J}
          end,
    {ok, {{_, St, _}, _, RB}} = httpc:request(Method, Req, [{timeout, 60000}], [{body_format, binary}]),
    {St, case RB of <<>> -> <<>>; _ -> {ok, T} = emqx_confluent_nif:json_decode(RB), T end}.

t_plugin_tarball(Config) ->
    Root = ec_test_util:root(),
    {0, Out} = ec_test_util:run(os:find_executable("make"), ["-C", Root, "--no-print-directory", "plugin"]),
    ct:pal("~s", [Out]),
    _ = application:load(emqx_confluent),
    {ok, Vsn} = application:get_key(emqx_confluent, vsn),
    Tar = filename:join([Root, "_build", "plugin", "emqx_confluent-" ++ Vsn ++ ".tar.gz"]),
    Dir = filename:join(?config(priv_dir, Config), "plugins"),
    ok = erl_tar:extract(Tar, [{cwd, Dir}, compressed]),
    RelDir = filename:join(Dir, "emqx_confluent-" ++ Vsn),
    %% what EMQX checks in release.json (emqx-plugin.md §2.1)
    {ok, RelJson} = file:read_file(filename:join(RelDir, "release.json")),
    {ok, Rel} = emqx_confluent_nif:json_decode(RelJson),
    NameVsn = list_to_binary("emqx_confluent-" ++ Vsn),
    ?assertMatch(#{<<"name">> := <<"emqx_confluent">>, <<"description">> := <<_, _/binary>>}, Rel),
    ?assertEqual(NameVsn, <<(maps:get(<<"name">>, Rel))/binary, "-", (maps:get(<<"rel_vsn">>, Rel))/binary>>),
    [AppVsn] = maps:get(<<"rel_apps">>, Rel),
    AppDir = filename:join(RelDir, binary_to_list(AppVsn)),
    ?assert(filelib:is_regular(filename:join([AppDir, "ebin", "emqx_confluent.app"]))),
    ?assert(filelib:is_regular(filename:join([AppDir, "priv", "emqx_confluent_nif.so"]))),
    {ok, Sha} = file:read_file(filename:join([Root, "_build", "plugin", "emqx_confluent-" ++ Vsn ++ ".sha256"])),
    {ok, TarBin} = file:read_file(Tar),
    ?assertEqual(string:lowercase(binary:encode_hex(crypto:hash(sha256, TarBin))), string:trim(Sha)),
    %% a fresh node whose only code of ours is the unpacked package; no API
    %% key configured: one is generated into the data directory
    TarData = filename:join(?config(priv_dir, Config), "tar-data"),
    {Peer, PNode} = start_peer(peer:random_name(), [filename:join(AppDir, "ebin")], TarData,
                               [{listen, "127.0.0.1:0"}]),
    try
        KeyFile = filename:join(TarData, "bootstrap_api_key"),
        {ok, KeyLine} = file:read_file(KeyFile),
        [K, S, <<"administrator">>] = binary:split(string:trim(KeyLine), <<":">>, [global]),
        {ok, #file_info{mode = KeyMode}} = file:read_file_info(KeyFile),
        ?assertEqual(8#600, KeyMode band 8#777),
        Gen = {binary_to_list(K), binary_to_list(S)},
        ?assertMatch({401, _}, peer_call(PNode, get, "/status", none)),
        ?assertMatch({200, #{<<"status">> := <<"running">>}}, peer_call(PNode, get, "/status", none, Gen)),
        ?assertEqual(filename:join(AppDir, "ebin"),
                     filename:dirname(erpc:call(PNode, code, which, [emqx_confluent_nif]))),
        ?assertMatch(#{loads := 1}, erpc:call(PNode, emqx_confluent_nif, nif_info, [])),
        ?assertMatch({200, #{<<"t">> := 21.5}},
                     peer_call(PNode, post, "/rule_test", #{<<"sql">> => <<"SELECT payload.t as t FROM \"t/#\"">>,
                                                           <<"context">> => #{<<"topic">> => <<"t/1">>,
                                                                              <<"payload">> => <<"{\"t\":21.5}">>}}, Gen))
    after
        peer:stop(Peer)
    end.

t_cluster_replication(Config) ->
    DataA = filename:join(?config(priv_dir, Config), "node-a"),
    DataB = filename:join(?config(priv_dir, Config), "node-b"),
    ok = ec_api:start_app(DataA),
    Ebin = filename:dirname(code:which(emqx_confluent_nif)),
    NameB = peer:random_name(),
    {PeerB, NodeB} = start_peer(NameB, [Ebin], DataB),
    try
        %% a change through this node's API applies on B
        {201, _} = call(post, "/connectors", ec_api:conn_body(plain, <<"shared">>)),
        ec_test_util:wait_until(fun() ->
                                        maps:is_key(<<"kafka_producer:shared">>,
                                                    maps:get(<<"connectors">>, erpc:call(NodeB, emqx_confluent_mgr, snapshot, [])))
                                end, 10000),
        ?assertMatch({200, #{<<"status">> := <<"connected">>}},
                     begin
                         ec_test_util:wait_until(fun() ->
                                                         {200, #{<<"status">> := S}} = peer_call(NodeB, get, "/connectors/kafka_producer:shared", none),
                                                         S =:= <<"connected">>
                                                 end, 20000),
                         peer_call(NodeB, get, "/connectors/kafka_producer:shared", none)
                     end),
        %% statuses list both nodes
        {200, C} = call(get, "/connectors/kafka_producer:shared"),
        ?assertEqual(lists:sort([atom_to_binary(node()), atom_to_binary(NodeB)]),
                     lists:sort([N || #{<<"node">> := N} <- maps:get(<<"node_status">>, C)])),
        %% a change through B applies here
        {201, _} = peer_call(NodeB, post, "/rules", #{<<"id">> => <<"from_b">>, <<"sql">> => <<"SELECT * FROM \"b/#\"">>}),
        ec_test_util:wait_until(fun() -> element(1, call(get, "/rules/from_b")) =:= 200 end, 10000),
        %% B goes down, A changes, B comes back and gets the newest configuration
        peer:stop(PeerB),
        {201, _} = call(post, "/rules", #{<<"id">> => <<"while_b_down">>, <<"sql">> => <<"SELECT * FROM \"c/#\"">>}),
        {204, _} = call(delete, "/rules/from_b"),
        VersionA = maps:get(<<"version">>, emqx_confluent_mgr:snapshot()),
        {PeerB2, NodeB2} = start_peer(NameB, [Ebin], DataB),
        try
            ec_test_util:wait_until(fun() ->
                                            maps:get(<<"version">>, erpc:call(NodeB2, emqx_confluent_mgr, snapshot, [])) =:= VersionA
                                    end, 10000),
            Rules = maps:get(<<"rules">>, erpc:call(NodeB2, emqx_confluent_mgr, snapshot, [])),
            ?assert(maps:is_key(<<"while_b_down">>, Rules)),
            ?assertNot(maps:is_key(<<"from_b">>, Rules)),
            %% and persisted it
            {ok, OnDisk} = emqx_confluent_store:load(DataB),
            ?assertEqual(VersionA, maps:get(<<"version">>, OnDisk))
        after
            peer:stop(PeerB2)
        end
    after
        catch peer:stop(PeerB),
        _ = application:stop(emqx_confluent)
    end.

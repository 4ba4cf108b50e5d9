%% @doc buffer.mode = disk against the real broker: records written while
%% Kafka is unreachable survive an action restart and a kill -9 of the node
%% and are delivered afterwards; a torn segment tail never blocks start-up and
%% the loss is reported; overflow drops are exact and dropped records are not
%% replayed. Kafka is made unreachable with a bootstrap address that refuses
%% connections until a proxy opens it, and, in t_kafka_stopped_60s, by
%% stopping the real broker for 60 s under steady load; t_kill9_under_load
%% freezes the broker (SIGSTOP) for about a second with requests in flight.
-module(emqx_confluent_disk_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-compile([export_all, nowarn_export_all]).

-define(NIF, emqx_confluent_nif).

all() -> [t_action_restart_replays, t_kill9_nothing_lost, t_kill9_under_load, t_torn_tail_reported,
          t_overflow_exact, t_kafka_stopped_60s].

conn(Port) ->
    #{<<"type">> => <<"kafka_producer">>,
      <<"bootstrap_hosts">> => iolist_to_binary(["127.0.0.1:", integer_to_list(Port)]),
      <<"metadata_request_timeout">> => <<"500ms">>}.

action(Topic, Dir, Extra) -> action(Topic, Dir, Extra, #{}).

%% Extra: members of "buffer"; Params: more members of "parameters"
action(Topic, Dir, Extra, Params) ->
    #{<<"buffer_dir">> => list_to_binary(Dir),
      <<"parameters">> =>
          maps:merge(#{<<"topic">> => Topic,
                       <<"message">> => #{<<"key">> => <<"${k}">>, <<"value">> => <<"${v}">>},
                       <<"partition_strategy">> => <<"key_dispatch">>,
                       <<"buffer">> => maps:merge(#{<<"mode">> => <<"disk">>,
                                                    <<"segment_bytes">> => <<"4KB">>}, Extra)},
                     Params)}.

%% headers from a map placeholder and an extra header holding the value
with_headers() ->
    #{<<"kafka_headers">> => <<"${h}">>,
      <<"kafka_ext_headers">> => [#{<<"kafka_ext_header_key">> => <<"n">>,
                                    <<"kafka_ext_header_value">> => <<"${v}">>}]}.

send(A, N) -> send(A, 1, N).

%% records From..To
send(A, From, To) ->
    [ok = ?NIF:action_send(A, #{<<"k">> => integer_to_binary(I rem 7),
                                <<"v">> => <<"value-", (integer_to_binary(I))/binary>>,
                                <<"h">> => #{<<"src">> => <<"disk">>}}, false)
     || I <- lists:seq(From, To)],
    ok.

values(Recs) -> lists:sort([maps:get(<<"payload">>, R) || R <- Recs]).
expected(Is) -> lists:sort([<<"value-", (integer_to_binary(I))/binary>> || I <- Is]).

setup(Config, Name) ->
    Topic = ec_test_util:unique_topic(Name),
    ok = ec_test_util:create_topic(Topic, 3),
    Dir = filename:join(?config(priv_dir, Config), binary_to_list(Topic)),
    {Topic, Dir, ec_test_util:free_port()}.

%% (with headers: records read back from disk carry them)
t_action_restart_replays(Config) ->
    {Topic, Dir, Port} = setup(Config, <<"disk-restart">>),
    {ok, A} = ?NIF:action_new(conn(Port), action(Topic, Dir, #{}, with_headers())),
    N = 200,
    ok = send(A, N),
    ?assertMatch(#{matched := N, queuing := N, success := 0}, ?NIF:action_metrics(A)),
    ok = ?NIF:action_destroy(A), %% Kafka still unreachable: all of it stays on disk
    ?assert(length(filelib:wildcard(filename:join(Dir, "*.seg"))) > 1),
    Proxy = emqx_confluent_sink_SUITE:start_proxy(Port, ec_test_util:kafka_port()),
    {ok, A2} = ?NIF:action_new(conn(Port), action(Topic, Dir, #{}, with_headers())),
    ?assertMatch(#{'buffer.replayed' := N, 'buffer.skipped_bytes' := 0}, ?NIF:action_metrics(A2)),
    Recs = ec_test_util:consume(Topic, N),
    ?assertEqual(expected(lists:seq(1, N)), values(Recs)),
    ?assertEqual([], [R || R = #{<<"payload">> := V} <- Recs,
                           maps:get(<<"headers">>, R, none) =/= [<<"src">>, <<"disk">>, <<"n">>, V]]),
    ec_test_util:wait_until(fun() -> maps:get(queuing, ?NIF:action_metrics(A2)) =:= 0 andalso
                                         maps:get(inflight, ?NIF:action_metrics(A2)) =:= 0 end, 20000),
    %% replayed records are not counted as success (sink-behaviour.md §6.1)
    ?assertMatch(#{success := 0, failed := 0}, ?NIF:action_metrics(A2)),
    ok = ?NIF:action_destroy(A2),
    %% everything was acknowledged: nothing comes back
    {ok, A3} = ?NIF:action_new(conn(Port), action(Topic, Dir, #{})),
    ?assertMatch(#{'buffer.replayed' := 0}, ?NIF:action_metrics(A3)),
    ok = ?NIF:action_destroy(A3),
    exit(Proxy, kill).

%% the node is killed (SIGKILL) with records buffered on disk
t_kill9_nothing_lost(Config) ->
    {Topic, Dir, Port} = setup(Config, <<"disk-kill9">>),
    {Peer, Node} = start_peer(),
    N = 300,
    OsPid = erpc:call(Node, fun() ->
                                    {ok, A} = ?NIF:action_new(conn(Port), action(Topic, Dir, #{})),
                                    ok = send(A, N),
                                    #{queuing := N} = ?NIF:action_metrics(A),
                                    %% the action's pump writes accepted records to
                                    %% disk as soon as it is woken (senders never do
                                    %% file I/O); the kill comes once it has
                                    timer:sleep(300),
                                    %% keep the action alive in a process of its own
                                    spawn(fun() -> receive after infinity -> A end end),
                                    os:getpid()
                            end),
    _ = os:cmd("kill -9 " ++ OsPid),
    catch peer:stop(Peer),
    Proxy = emqx_confluent_sink_SUITE:start_proxy(Port, ec_test_util:kafka_port()),
    {ok, A2} = ?NIF:action_new(conn(Port), action(Topic, Dir, #{})),
    ?assertMatch(#{'buffer.replayed' := N}, ?NIF:action_metrics(A2)),
    ?assertEqual(expected(lists:seq(1, N)), values(ec_test_util:consume(Topic, N))),
    ok = ?NIF:action_destroy(A2),
    exit(Proxy, kill).

%% The node is killed (SIGKILL) under load: records flow to Kafka, then the
%% broker is frozen (SIGSTOP) with requests in flight while records keep
%% coming, and the node is killed. After the restart every record arrives;
%% the only duplicates are records sent again, which are counted as replayed.
t_kill9_under_load(Config) ->
    {Topic, Dir, _} = setup(Config, <<"disk-kill9-load">>),
    KPid = string:trim(os:cmd("cat " ++ binary_to_list(ec_test_util:kafka(<<"KAFKA_DIR">>)) ++ "/kafka.pid")),
    {Peer, Node} = start_peer(),
    N = 2400,
    Half = N div 2,
    Conn = conn(ec_test_util:kafka_port()),
    Act = action(Topic, Dir, #{}),
    %% the first half, 20 records every 10 ms, while Kafka answers
    {OsPid, Delivered} =
        erpc:call(Node, fun() ->
                                {ok, A} = ?NIF:action_new(Conn, Act),
                                register(ec_keeper, spawn(fun() -> keeper(A) end)),
                                ok = send_paced(A, 1, Half),
                                {os:getpid(), maps:get(success, ?NIF:action_metrics(A))}
                        end, 60000),
    try
        "" = os:cmd("kill -STOP " ++ KPid),
        %% the second half while the broker is frozen
        ok = erpc:call(Node, fun() ->
                                     ec_keeper ! {get, self()},
                                     A = receive {action, R} -> R end,
                                     ok = send_paced(A, Half + 1, N),
                                     timer:sleep(300) %% every accepted record written
                             end, 60000),
        _ = os:cmd("kill -9 " ++ OsPid)
    after
        os:cmd("kill -CONT " ++ KPid)
    end,
    catch peer:stop(Peer),
    ct:pal("acknowledged before the broker froze: ~p of ~p", [Delivered, N]),
    ?assert(Delivered > 0),
    {ok, A2} = ?NIF:action_new(Conn, Act),
    #{'buffer.replayed' := Replayed} = ?NIF:action_metrics(A2),
    %% the second half was never acknowledged; most of the first half was,
    %% and committed at the syncs while it was sent
    ?assert(Replayed >= N - Half andalso Replayed < N),
    true = ec_test_util:wait_until(fun() -> #{queuing := Q, inflight := F} = ?NIF:action_metrics(A2),
                                            Q =:= 0 andalso F =:= 0 end, 60000),
    Got = values(ec_test_util:consume(Topic, N, 60000)),
    ?assertEqual(expected(lists:seq(1, N)), lists:usort(Got)),
    Duplicates = length(Got) - N,
    ct:pal("replayed ~p, duplicates ~p", [Replayed, Duplicates]),
    ?assert(Duplicates =< Replayed),
    ok = ?NIF:action_destroy(A2).

keeper(A) ->
    receive {get, From} -> From ! {action, A} end,
    keeper(A).

%% records From..To, 20 every 10 ms
send_paced(_A, From, To) when From > To -> ok;
send_paced(A, From, To) ->
    ok = send(A, From, min(From + 19, To)),
    timer:sleep(10),
    send_paced(A, From + 20, To).

%% a node of its own (killed by the kill -9 tests)
start_peer() ->
    ok = ec_test_util:ensure_distributed("ec_disk_"),
    Ebin = filename:dirname(code:which(?NIF)),
    TestBeams = filename:dirname(code:which(?MODULE)),
    {ok, Peer, Node} = peer:start(#{name => peer:random_name(), args => ["-pa", Ebin, "-pa", TestBeams]}),
    {Peer, Node}.

%% power loss in the middle of the last record: start-up works, the loss is
%% reported, the records before it are delivered
t_torn_tail_reported(Config) ->
    {Topic, Dir, Port} = setup(Config, <<"disk-torn">>),
    {ok, A} = ?NIF:action_new(conn(Port), action(Topic, Dir, #{<<"segment_bytes">> => <<"1MB">>})),
    N = 20,
    ok = send(A, N),
    ok = ?NIF:action_destroy(A),
    [Seg] = filelib:wildcard(filename:join(Dir, "*.seg")),
    Size = filelib:file_size(Seg),
    {ok, Fd} = file:open(Seg, [read, write, raw]),
    {ok, _} = file:position(Fd, Size - 5),
    ok = file:truncate(Fd),
    ok = file:close(Fd),
    Proxy = emqx_confluent_sink_SUITE:start_proxy(Port, ec_test_util:kafka_port()),
    {ok, A2} = ?NIF:action_new(conn(Port), action(Topic, Dir, #{<<"segment_bytes">> => <<"1MB">>})),
    #{'buffer.replayed' := Replayed, 'buffer.skipped_bytes' := Skipped} = ?NIF:action_metrics(A2),
    ?assertEqual(N - 1, Replayed),
    ?assert(Skipped > 0),
    ?assertEqual(expected(lists:seq(1, N - 1)), values(ec_test_util:consume(Topic, N - 1))),
    ok = ?NIF:action_destroy(A2),
    exit(Proxy, kill).

%% a small per_partition_limit while Kafka is unreachable: exact drops, and
%% dropped records are gone from the disk too
t_overflow_exact(Config) ->
    {Topic, Dir, Port} = setup(Config, <<"disk-overflow">>),
    %% every value is "value-NN" (8 bytes) with a 1-byte key: equal estimates
    Extra = #{<<"per_partition_limit">> => <<"1KB">>},
    {ok, A} = ?NIF:action_new(conn(Port), action(Topic, Dir, Extra)),
    ok = send(A, 99),
    %% the limit is enforced as the pump writes the records: wait for it
    #{dropped := Dropped, 'dropped.queue_full' := Dropped, queuing := Kept} = settled(A),
    ?assertEqual(99, Dropped + Kept),
    ?assert(Dropped > 0),
    ok = ?NIF:action_destroy(A),
    Proxy = emqx_confluent_sink_SUITE:start_proxy(Port, ec_test_util:kafka_port()),
    {ok, A2} = ?NIF:action_new(conn(Port), action(Topic, Dir, Extra)),
    ?assertMatch(#{'buffer.replayed' := Kept}, ?NIF:action_metrics(A2)),
    %% the newest ones were kept (drop-oldest)
    ?assertEqual(expected(lists:seq(99 - Kept + 1, 99)), values(ec_test_util:consume(Topic, Kept))),
    ok = ?NIF:action_destroy(A2),
    exit(Proxy, kill).

%% Kafka itself is stopped for 60 s while records keep coming (50 per second),
%% then started again: every record arrives and each is counted as success once.
t_kafka_stopped_60s(Config) ->
    {Topic, Dir, _} = setup(Config, <<"disk-outage">>),
    {ok, A} = ?NIF:action_new(conn(ec_test_util:kafka_port()), action(Topic, Dir, #{})),
    Sender = spawn_link(fun() -> steady_sender(A, 1) end),
    KDir = binary_to_list(ec_test_util:kafka(<<"KAFKA_DIR">>)),
    timer:sleep(3000),
    Before = maps:get(success, ?NIF:action_metrics(A)),
    ?assert(Before > 0),
    try
        {0, _} = ec_test_util:script("kafka.sh", ["stop", KDir]),
        timer:sleep(60000),
        %% the records of the outage are waiting, none failed or dropped
        #{matched := M, success := S, failed := 0, dropped := 0} = ?NIF:action_metrics(A),
        ?assert(M - S > 2000)
    after
        {0, _} = ec_test_util:script("kafka.sh", ["start", KDir])
    end,
    timer:sleep(3000),
    Sender ! {stop, self()},
    N = receive {sent, Sender, Count} -> Count end,
    true = ec_test_util:wait_until(
             fun() ->
                     #{success := S2, queuing := Q, inflight := F} = ?NIF:action_metrics(A),
                     S2 >= N andalso Q =:= 0 andalso F =:= 0
             end, 60000),
    ?assertMatch(#{matched := N, success := N, failed := 0, dropped := 0, queuing := 0, inflight := 0},
                 ?NIF:action_metrics(A)),
    %% at-least-once: a retried batch may have been written twice, none is missing
    Got = lists:usort(values(ec_test_util:consume(Topic, N, 60000))),
    ?assertEqual(expected(lists:seq(1, N)), Got),
    ok = ?NIF:action_destroy(A).

steady_sender(A, I) ->
    receive
        {stop, From} -> From ! {sent, self(), I - 1}
    after 20 ->
        ok = ?NIF:action_send(A, #{<<"k">> => integer_to_binary(I rem 7),
                                   <<"v">> => <<"value-", (integer_to_binary(I))/binary>>}, false),
        steady_sender(A, I + 1)
    end.

%% the metrics once the pump has written what was sent (two equal readings 200 ms apart)
settled(A) ->
    M0 = ?NIF:action_metrics(A),
    timer:sleep(200),
    case ?NIF:action_metrics(A) of
        M0 -> M0;
        _ -> settled(A)
    end.

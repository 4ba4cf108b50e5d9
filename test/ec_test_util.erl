%% @doc Helpers shared by the common_test suites: the project root, running
%% the project's scripts, the services started by ec_services_cth, and a
%% Kafka consumer (kcat) that reads records back for checking.
-module(ec_test_util).

-export([root/0, script/2, run/2, read_env/1,
         kafka/0, kafka/1, mqtt/0,
         sasl_ssl_props/0, sasl_ssl_props/1, plaintext_props/0,
         unique_topic/1, consume/2, consume/3, wait_until/2, create_topic/2, delete_topic/1, topics/0,
         connector_conf/1, connector_conf/2, ensure_distributed/1, kafka_port/0, free_port/0]).

%% @doc The project checkout (holds Makefile and scripts/).
root() ->
    case os:getenv("EC_ROOT") of
        false -> find_root(filename:dirname(code:which(?MODULE)));
        R -> R
    end.

find_root("/") -> error(project_root_not_found);
find_root(Dir) ->
    case filelib:is_regular(filename:join([Dir, "scripts", "kafka.sh"])) of
        true -> Dir;
        false -> find_root(filename:dirname(Dir))
    end.

%% @doc Runs scripts/Name with Args; {ExitStatus, Output}.
script(Name, Args) ->
    run(filename:join([root(), "scripts", Name]), Args).

run(Exe, Args) ->
    Port = open_port({spawn_executable, Exe},
                     [exit_status, stderr_to_stdout, binary, {args, Args}]),
    collect(Port, []).

collect(Port, Acc) ->
    receive
        {Port, {data, D}} -> collect(Port, [D | Acc]);
        {Port, {exit_status, S}} -> {S, iolist_to_binary(lists:reverse(Acc))}
    end.

read_env(File) ->
    {ok, Bin} = file:read_file(File),
    maps:from_list([list_to_tuple(binary:split(L, <<"=">>))
                    || L <- binary:split(Bin, <<"\n">>, [global, trim_all])]).

kafka() -> persistent_term:get({ec_services, kafka}).
kafka(Key) -> maps:get(Key, kafka()).
mqtt() -> persistent_term:get({ec_services, mqtt}).

%% @doc librdkafka properties for the SASL_SSL/PLAIN listener (Confluent style).
sasl_ssl_props() -> sasl_ssl_props(kafka(<<"KAFKA_SASL_SECRET">>)).
sasl_ssl_props(Secret) ->
    K = kafka(),
    [{<<"bootstrap.servers">>, maps:get(<<"KAFKA_SASL_SSL">>, K)},
     {<<"security.protocol">>, <<"SASL_SSL">>},
     {<<"sasl.mechanisms">>, <<"PLAIN">>},
     {<<"sasl.username">>, maps:get(<<"KAFKA_SASL_KEY">>, K)},
     {<<"sasl.password">>, Secret},
     {<<"ssl.ca.location">>, maps:get(<<"KAFKA_CA">>, K)}].

plaintext_props() ->
    [{<<"bootstrap.servers">>, kafka(<<"KAFKA_PLAINTEXT">>)}].

unique_topic(Prefix) ->
    iolist_to_binary([Prefix, "-", integer_to_list(erlang:unique_integer([positive])),
                      "-", integer_to_list(erlang:system_time(millisecond))]).

%% @doc Reads every record of Topic from the beginning (PLAINTEXT listener)
%% as maps with binary keys: topic, partition, offset, ts, key, payload,
%% headers ([K1, V1, ...]); waits until at least Min records are there.
consume(Topic, Min) -> consume(Topic, Min, 20000).
consume(Topic, Min, TimeoutMs) ->
    Deadline = erlang:monotonic_time(millisecond) + TimeoutMs,
    consume_loop(Topic, Min, Deadline).

consume_loop(Topic, Min, Deadline) ->
    Kcat = os:find_executable("kcat"),
    {_, Out} = run(Kcat, ["-C", "-b", binary_to_list(kafka(<<"KAFKA_PLAINTEXT">>)),
                          "-t", binary_to_list(Topic), "-o", "beginning", "-e", "-q", "-J"]),
    Records = [R || L <- binary:split(Out, <<"\n">>, [global, trim_all]),
                    {ok, R} <- [emqx_confluent_nif:json_decode(L)], is_map(R)],
    case length(Records) >= Min of
        true -> Records;
        false ->
            case erlang:monotonic_time(millisecond) > Deadline of
                true -> error({too_few_records, Topic, length(Records), Min, Out});
                false -> timer:sleep(200), consume_loop(Topic, Min, Deadline)
            end
    end.

%% @doc The port of the test broker's PLAINTEXT listener on 127.0.0.1.
kafka_port() ->
    [_, P] = binary:split(kafka(<<"KAFKA_PLAINTEXT">>), <<":">>),
    binary_to_integer(P).

%% @doc A port on 127.0.0.1 that nothing listens on: connections to it are
%% refused until something does (a proxy opened later).
free_port() ->
    {ok, L} = gen_tcp:listen(0, [{ip, {127, 0, 0, 1}}]),
    {ok, Port} = inet:port(L),
    ok = gen_tcp:close(L),
    Port.

%% @doc Makes this node distributed (for peer nodes) unless it is already;
%% Prefix starts its name.
ensure_distributed(Prefix) ->
    case is_alive() of
        true -> ok;
        false ->
            _ = os:cmd("epmd -daemon"),
            {ok, _} = net_kernel:start([list_to_atom(Prefix ++ os:getpid()), shortnames]),
            ok
    end.

%% @doc Polls Fun until it returns true, up to TimeoutMs.
wait_until(Fun, TimeoutMs) when TimeoutMs =< 0 ->
    Fun() orelse error(wait_until_timeout);
wait_until(Fun, TimeoutMs) ->
    case Fun() of
        true -> true;
        _ -> timer:sleep(50), wait_until(Fun, TimeoutMs - 50)
    end.

%% @doc Creates Topic with Partitions partitions on the test broker.
create_topic(Topic, Partitions) ->
    {0, _} = script("kafka.sh", ["create-topic", binary_to_list(kafka(<<"KAFKA_DIR">>)),
                                 binary_to_list(Topic), integer_to_list(Partitions)]),
    ok.

%% @doc The topics the test broker lists.
topics() ->
    {0, Out} = run(os:find_executable("kcat"), ["-L", "-b", binary_to_list(kafka(<<"KAFKA_PLAINTEXT">>))]),
    [T || L <- binary:split(Out, <<"\n">>, [global]),
          {match, [T]} <- [re:run(L, <<"^\\s*topic \"([^\"]+)\"">>, [{capture, all_but_first, binary}])]].

%% @doc Deletes Topic on the test broker.
delete_topic(Topic) ->
    {0, _} = script("kafka.sh", ["delete-topic", binary_to_list(kafka(<<"KAFKA_DIR">>)),
                                 binary_to_list(Topic)]),
    ok.

%% @doc EMQX-shaped connector configs for the test broker:
%% confluent (SASL_SSL + PLAIN API key/secret, as Confluent Cloud) or plaintext.
connector_conf(Kind) -> connector_conf(Kind, kafka(<<"KAFKA_SASL_SECRET">>)).
connector_conf(confluent, Secret) ->
    #{<<"type">> => <<"confluent_producer">>,
      <<"bootstrap_hosts">> => kafka(<<"KAFKA_SASL_SSL">>),
      <<"authentication">> => #{<<"username">> => kafka(<<"KAFKA_SASL_KEY">>), <<"password">> => Secret},
      <<"connect_timeout">> => <<"5s">>,
      <<"metadata_request_timeout">> => <<"3s">>};
connector_conf(plain, _) ->
    #{<<"type">> => <<"kafka_producer">>,
      <<"bootstrap_hosts">> => kafka(<<"KAFKA_PLAINTEXT">>),
      <<"authentication">> => <<"none">>,
      <<"metadata_request_timeout">> => <<"3s">>}.

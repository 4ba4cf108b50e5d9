%% @doc common_test hook: starts the real services every suite may use, once
%% per test run, and stops them after the last suite.
%%   - Apache Kafka (KRaft, one node, PLAINTEXT + SASL_SSL/PLAIN + SASL_PLAINTEXT/OAUTHBEARER) via scripts/kafka.sh
%%   - mosquitto on a free port via scripts/mqtt.sh
%% Their coordinates are read back with ec_test_util:kafka/0 and mqtt/0.
-module(ec_services_cth).

-export([id/1, init/2, terminate/1]).

id(_Opts) -> ?MODULE.

init(_Id, _Opts) ->
    Root = ec_test_util:root(),
    Dir = filename:join(Root, "_build/test/services"),
    KDir = filename:join(Dir, "kafka"),
    MDir = filename:join(Dir, "mqtt"),
    %% a previous run killed hard may have left them: start clean
    _ = ec_test_util:script("kafka.sh", ["clean", KDir]),
    _ = ec_test_util:script("mqtt.sh", ["stop", MDir]),
    _ = file:del_dir_r(MDir),
    ok = start("kafka.sh", KDir),
    ok = start("mqtt.sh", MDir),
    persistent_term:put({ec_services, kafka}, ec_test_util:read_env(filename:join(KDir, "env"))),
    persistent_term:put({ec_services, mqtt}, ec_test_util:read_env(filename:join(MDir, "env"))),
    {ok, #{kafka => KDir, mqtt => MDir}}.

terminate(#{kafka := KDir, mqtt := MDir}) ->
    _ = ec_test_util:script("kafka.sh", ["clean", KDir]),
    _ = ec_test_util:script("mqtt.sh", ["stop", MDir]),
    ok.

start(Script, Dir) ->
    case ec_test_util:script(Script, ["start", Dir]) of
        {0, _} -> ok;
        {Status, Out} -> error({service_start_failed, Script, Status, Out})
    end.

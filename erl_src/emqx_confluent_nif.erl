%% @doc The only module with NIF stubs: the Erlang face of the C library in
%% c_src/ (priv/emqx_confluent_nif.so). Every function here is implemented in
%% C; the Erlang bodies run only when the library failed to load.
%%
%% Messages the library sends back are listed in c_src/nif/MESSAGES.md.
-module(emqx_confluent_nif).

-export([nif_info/0,
         json_decode/1, json_encode/1,
         producer_new/1, producer_send/6, producer_ping/2, producer_close/1,
         rule_compile/2, ruleset_new/1, ruleset_eval/2, rule_test/1,
         rule_metrics/1, rule_metrics_reset/1, rule_from/1,
         connector_new/1, connector_health/1,
         action_new/2, action_send/3, action_metrics/1, action_metrics_reset/1,
         action_health/1, action_destroy/1, duration_ms/1,
         pipeline_new/2, pipeline_publish/3, pipeline_publish/4, pipeline_event/2, config_check/2,
         source_new/4, source_set_pipeline/2, source_stats/1, source_stop/1, source_check/2,
         oauth_owner/1, oauth_token/2, oauth_stats/0]).

-on_load(init/0).

-define(NIF_NAME, "emqx_confluent_nif").

-type error_info() :: #{reason := atom(), message := binary(),
                        position => non_neg_integer(), line => pos_integer(),
                        column => pos_integer()}.
-opaque producer() :: reference().
-opaque rule() :: reference().
-opaque ruleset() :: reference().
-opaque connector() :: reference().
-opaque action() :: reference().
-opaque pipeline() :: reference().
-opaque source() :: reference().
-type rule_result() :: {ok, map() | [map()]} | no_result | {error, binary()}.
-export_type([error_info/0, producer/0, rule/0, ruleset/0, rule_result/0,
              connector/0, action/0, pipeline/0, source/0]).

init() ->
    erlang:load_nif(filename:join(priv_dir(), ?NIF_NAME), 0).

priv_dir() ->
    case code:priv_dir(emqx_confluent) of
        {error, bad_name} ->
            %% not loaded as an application: priv/ next to our ebin/
            filename:join(filename:dirname(filename:dirname(code:which(?MODULE))), "priv");
        Dir ->
            Dir
    end.

-define(NOT_LOADED, erlang:nif_error({not_loaded, ?MODULE})).

%% @doc Library version, load/upgrade/unload counts and live object counts.
-spec nif_info() -> #{atom() => term()}.
nif_info() -> ?NOT_LOADED.

%% @doc Decodes JSON with the C codec (the one rules use); objects become maps
%% with binary keys, `null' the atom null.
-spec json_decode(binary()) -> {ok, term()} | {error, error_info()}.
json_decode(_Bin) -> ?NOT_LOADED.

%% @doc Encodes a term the way EMQX serializes rule outputs (undefined as
%% "undefined", shortest round-trip floats, EMQX key order).
-spec json_encode(term()) -> {ok, binary()} | {error, error_info()}.
json_encode(_Term) -> ?NOT_LOADED.

%% @doc Creates a Kafka producer from librdkafka properties. The calling
%% process owns it: when it exits, the producer is closed.
-spec producer_new([{iodata(), iodata()}]) -> {ok, producer()} | {error, error_info()}.
producer_new(_Props) -> ?NOT_LOADED.

%% @doc Enqueues one record; the caller later receives exactly one
%% `{ec_delivery, Ref, ok, Partition, Offset}' or `{ec_delivery, Ref, {error, Msg}}'.
-spec producer_send(producer(), Topic :: iodata(), Key :: iodata() | undefined,
                    Value :: iodata() | undefined, Headers :: [{binary(), binary()}],
                    TimestampMs :: integer()) ->
          {ok, reference()} | {error, closed | error_info()}.
producer_send(_P, _Topic, _Key, _Value, _Headers, _Ts) -> ?NOT_LOADED.

%% @doc Asks the cluster for metadata: ok when a broker answered in time.
-spec producer_ping(producer(), non_neg_integer()) -> ok | {error, closed | error_info()}.
producer_ping(_P, _TimeoutMs) -> ?NOT_LOADED.

%% @doc Flushes (up to 5 s) and destroys the producer. Idempotent.
-spec producer_close(producer()) -> ok.
producer_close(_P) -> ?NOT_LOADED.

%% @doc Compiles one rule. A syntax error names line, column and what was
%% expected: `{error, #{reason := parse, line, column, message}}'.
-spec rule_compile(Id :: iodata(), Sql :: iodata()) -> {ok, rule()} | {error, error_info()}.
rule_compile(_Id, _Sql) -> ?NOT_LOADED.

%% @doc An immutable, indexed set of compiled rules.
-spec ruleset_new([rule()]) -> {ok, ruleset()} | {error, error_info()}.
ruleset_new(_Rules) -> ?NOT_LOADED.

%% @doc Runs every rule of the set whose FROM matches the message (or event,
%% when `event' is not message.publish) against its column map (atom keys).
%% One entry per triggered rule, in rule order.
-spec ruleset_eval(ruleset(), map()) -> [{RuleId :: binary(), rule_result()}].
ruleset_eval(_Set, _Columns) -> ?NOT_LOADED.

%% @doc Names the process that fetches OAUTHBEARER tokens: it receives
%% `{ec_oauth_fetch, Id, #{endpoint_uri, client_id, client_secret, scope}}'
%% and answers with oauth_token/2. `undefined' removes it.
-spec oauth_owner(pid() | undefined) -> ok.
oauth_owner(_Pid) -> ?NOT_LOADED.

%% @doc The answer to one fetch request: the token (ExpiresAt in wall-clock
%% ms since the epoch), or why there is none. Every producer of that store
%% gets it.
-spec oauth_token(pos_integer(), {ok, binary(), integer(), binary()} | {error, binary()}) ->
          ok | {error, unknown_store}.
oauth_token(_Id, _Result) -> ?NOT_LOADED.

%% @doc Token requests made, tokens and failures received, live stores.
-spec oauth_stats() -> #{requests | tokens | failures | stores => non_neg_integer()}.
oauth_stats() -> ?NOT_LOADED.

%% @doc The rule tester: one JSON request in, one JSON answer out (the same
%% code as priv/bin/rule-test).
-spec rule_test(iodata()) -> binary().
rule_test(_RequestJson) -> ?NOT_LOADED.

%% @doc EMQX's rule counters: matched, passed, failed, 'failed.exception',
%% 'failed.no_result', 'actions.total', 'actions.success', 'actions.failed'.
-spec rule_metrics(rule()) -> #{atom() => non_neg_integer()}.
rule_metrics(_Rule) -> ?NOT_LOADED.

-spec rule_metrics_reset(rule()) -> ok.
rule_metrics_reset(_Rule) -> ?NOT_LOADED.

%% @doc The topics and event topics of the rule's FROM, as written.
-spec rule_from(rule()) -> [binary()].
rule_from(_Rule) -> ?NOT_LOADED.

%% @doc A connector from its EMQX-shaped config map (confluent_producer or
%% kafka_producer). Errors name the field: `#{message := <<"ssl.verify: ...">>}'.
-spec connector_new(map()) -> {ok, connector()} | {error, error_info()}.
connector_new(_Conf) -> ?NOT_LOADED.

%% @doc One health probe (a metadata request): ok or the reason.
-spec connector_health(connector()) -> ok | {error, error_info()}.
connector_health(_Conn) -> ?NOT_LOADED.

%% @doc A producer action from the connector's and the action's config maps.
-spec action_new(ConnectorConf :: map(), ActionConf :: map()) -> {ok, action()} | {error, error_info()}.
action_new(_Conn, _Action) -> ?NOT_LOADED.

%% @doc Renders a rule output and buffers the record. With Reply = true the
%% caller later receives one `{ec_action_reply, Ref, ...}' message.
-spec action_send(action(), map(), boolean()) -> ok | {ok, reference()} | {error, error_info()}.
action_send(_Action, _Output, _Reply) -> ?NOT_LOADED.

%% @doc The action metrics of sink-behaviour.md §10.1.
-spec action_metrics(action()) -> #{atom() => integer()}.
action_metrics(_Action) -> ?NOT_LOADED.

-spec action_metrics_reset(action()) -> ok.
action_metrics_reset(_Action) -> ?NOT_LOADED.

-spec action_health(action()) -> ok | {error, error_info()}.
action_health(_Action) -> ?NOT_LOADED.

%% @doc Drains and flushes (up to 5 s), then frees the action. Idempotent.
-spec action_destroy(action()) -> ok.
action_destroy(_Action) -> ?NOT_LOADED.

%% @doc An EMQX duration ("5s", "1m30s", "500ms" or integer ms) in ms.
-spec duration_ms(binary() | integer()) -> {ok, non_neg_integer()} | error.
duration_ms(_D) -> ?NOT_LOADED.

%% @doc Binds rules of a rule set to the actions their outputs go to.
-spec pipeline_new(ruleset(), [{RuleId :: binary(), [action()]}]) -> {ok, pipeline()}.
pipeline_new(_RuleSet, _Bindings) -> ?NOT_LOADED.

%% @doc The message.publish path in one call: EMQX's #message{} record becomes
%% the rule columns in C, matching rules run, outputs are enqueued on their
%% actions. Returns how many records were enqueued.
-spec pipeline_publish(pipeline(), tuple(), Node :: binary()) -> non_neg_integer().
pipeline_publish(_Pipeline, _Message, _Node) -> ?NOT_LOADED.

%% @doc pipeline_publish/3 where records of query_mode sync actions owe
%% ReplyTo one `{ec_action_reply, Ref, ...}' each: returns
%% `{Enqueued, [{Ref, SyncQueryTimeoutMs}]}' when there are such records.
-spec pipeline_publish(pipeline(), tuple(), binary(), pid() | undefined) ->
          non_neg_integer() | {non_neg_integer(), [{reference(), non_neg_integer()}]}.
pipeline_publish(_Pipeline, _Message, _Node, _ReplyTo) -> ?NOT_LOADED.

%% @doc An event (client.connected, session.subscribed, ...) as its column
%% map (atom keys, `event' set) through the rules whose FROM names it.
-spec pipeline_event(pipeline(), map()) -> non_neg_integer().
pipeline_event(_Pipeline, _Columns) -> ?NOT_LOADED.

%% @doc Everything connector_new/1 and action_new/2 would refuse (field paths
%% in the message), without creating a producer. ActionConf may be undefined.
-spec config_check(map(), map() | undefined) -> ok | {error, error_info()}.
config_check(_ConnectorConf, _ActionConf) -> ?NOT_LOADED.

%% @doc Starts an MQTT source (standalone mode): a libmosquitto subscriber
%% thread whose messages run through Pipeline as message.publish events.
%% ConnConf is EMQX's MQTT connector shape, SourceConf has `parameters'
%% (topic or topics, qos). Node is the `node' column.
-spec source_new(map(), map(), binary(), pipeline()) -> {ok, source()} | {error, error_info()}.
source_new(_Conn, _Source, _Node, _Pipeline) -> ?NOT_LOADED.

%% @doc Messages received from now on run through Pipeline.
-spec source_set_pipeline(source(), pipeline()) -> ok.
source_set_pipeline(_Src, _Pipeline) -> ?NOT_LOADED.

%% @doc `#{received, connected, connects, connect_failures, last_error}'.
-spec source_stats(source()) -> map().
source_stats(_Src) -> ?NOT_LOADED.

%% @doc Disconnects and joins the subscriber thread. Idempotent.
-spec source_stop(source()) -> ok.
source_stop(_Src) -> ?NOT_LOADED.

%% @doc What source_new/4 would refuse in the configuration (field paths).
-spec source_check(map(), map()) -> ok | {error, error_info()}.
source_check(_Conn, _Source) -> ?NOT_LOADED.

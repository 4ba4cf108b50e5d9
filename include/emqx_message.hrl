%% EMQX's #message{} record (emqx-plugin.md §6), declared here so the plugin
%% builds without EMQX's source. Field order is EMQX's (5.4 - 5.10).
-ifndef(EMQX_CONFLUENT_MESSAGE_HRL).
-define(EMQX_CONFLUENT_MESSAGE_HRL, true).

-record(message, {
    id :: binary(),
    qos = 0 :: 0 | 1 | 2,
    from :: atom() | binary(),
    flags = #{} :: #{atom() => boolean()},
    headers = #{} :: map(),
    topic :: binary(),
    payload :: iodata(),
    timestamp :: integer(),
    extra = #{} :: term()
}).

-endif.

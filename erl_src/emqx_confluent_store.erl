%% @doc The persisted configuration: one JSON document holding every
%% connector, action and rule, with a version that grows by one per change.
%% Written atomically (temp file, fsync, rename, fsync of the directory), so
%% a crash leaves either the old or the new file, never a mix. The file holds
%% secrets in clear and is created with mode 0600.
-module(emqx_confluent_store).

-export([empty/0, load/1, save/2, file/1]).

-define(FORMAT, 1).

-spec empty() -> map().
empty() ->
    #{<<"format">> => ?FORMAT, <<"version">> => 0, <<"connectors">> => #{},
      <<"actions">> => #{}, <<"sources">> => #{}, <<"rules">> => #{}}.

file(Dir) -> filename:join(Dir, "config.json").

%% @doc The stored configuration, or empty/0 when there is none yet.
-spec load(file:filename()) -> {ok, map()} | {error, term()}.
load(Dir) ->
    case file:read_file(file(Dir)) of
        {ok, Bin} ->
            case emqx_confluent_nif:json_decode(Bin) of
                {ok, #{<<"format">> := ?FORMAT} = Cfg} -> {ok, maps:merge(empty(), Cfg)};
                {ok, _} -> {error, {unknown_format, file(Dir)}};
                {error, #{message := M}} -> {error, {corrupt, file(Dir), M}}
            end;
        {error, enoent} ->
            {ok, empty()};
        {error, E} ->
            {error, {E, file(Dir)}}
    end.

-spec save(file:filename(), map()) -> ok | {error, term()}.
save(Dir, Cfg) ->
    File = file(Dir),
    Tmp = File ++ ".tmp",
    {ok, Json} = emqx_confluent_nif:json_encode(Cfg),
    try
        ok = filelib:ensure_dir(File),
        {ok, Fd} = file:open(Tmp, [write, raw, binary]),
        try
            ok = file:write(Fd, Json),
            ok = file:sync(Fd)
        after
            file:close(Fd)
        end,
        ok = file:change_mode(Tmp, 8#600),
        ok = file:rename(Tmp, File),
        sync_dir(Dir)
    catch
        error:{badmatch, {error, E}} -> {error, {E, File}}
    end.

%% the rename is durable once the directory entry is on disk
sync_dir(Dir) ->
    case file:open(Dir, [read, raw]) of
        {ok, Fd} -> _ = file:sync(Fd), file:close(Fd);
        {error, _} -> ok
    end.

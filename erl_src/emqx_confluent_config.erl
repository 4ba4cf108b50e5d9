%% @doc Changes to the configuration snapshot as pure functions: each request
%% is validated against the current snapshot and yields the next one or an
%% API error (status, code, message naming the field), so nothing is ever
%% half-applied. Rules (rest-api.md §2-4): EMQX's names and ids, dependants
%% block deletes, secrets sent back as "******" keep the stored value, SQL is
%% compiled on save.
-module(emqx_confluent_config).

-export([change/3, parse_id/2, id/2, find/3, action_ids_of_connector/2, source_ids_of_connector/2,
         rules_using/2,
         runtime_conf/1, rule_ids/1, not_found/2]).
-export_type([error/0]).

-type error() :: #{status := pos_integer(), code := binary(), message := binary(),
                   extra => map()}.
-type kind() :: connector | action | source | rule.

-define(S, emqx_confluent_schema).
-define(BOOKKEEPING, [<<"created_at">>, <<"last_modified_at">>]).

%% @doc Applies Req to Cfg at time Now (ms). Reply is what the API answers
%% with on success (the id of the object concerned).
-spec change(term(), map(), integer()) -> {ok, map(), binary()} | {error, error()}.
change({create, connector, Body}, Cfg, _Now) ->
    with_type_name(connector, Body, Cfg,
                   fun(Type, Name, Id) ->
                           case ?S:check_connector(Type, Body) of
                               {ok, Conf} -> put_obj(connector, Id, Conf#{<<"type">> => Type, <<"name">> => Name}, Cfg);
                               {error, M} -> bad_request(M)
                           end
                   end);
change({update, connector, Id, Body}, Cfg, _Now) ->
    with_existing(connector, Id, Cfg,
                  fun(#{<<"type">> := Type, <<"name">> := Name} = Old) ->
                          case ?S:check_connector(Type, ?S:unmask_secrets(object(Body), Old)) of
                              {ok, Conf} -> put_obj(connector, Id, Conf#{<<"type">> => Type, <<"name">> => Name}, Cfg);
                              {error, M} -> bad_request(M)
                          end
                  end);
change({delete, connector, Id}, Cfg, _Now) ->
    with_existing(connector, Id, Cfg,
                  fun(_) ->
                          case action_ids_of_connector(Id, Cfg) ++ source_ids_of_connector(Id, Cfg) of
                              [] -> {ok, del_obj(connector, Id, Cfg), Id};
                              Users ->
                                  bad_request(iolist_to_binary(
                                                ["Cannot delete connector while there are active channels "
                                                 "defined for this connector: ", lists:join(<<", ">>, Users)]))
                          end
                  end);
change({enable, Kind, Id, Enable}, Cfg, Now) when is_boolean(Enable) ->
    with_existing(Kind, Id, Cfg,
                  fun(Old) -> put_obj(Kind, Id, touch(Old#{<<"enable">> => Enable}, Kind, Now), Cfg) end);
change({create, Kind, Body}, Cfg, Now) when Kind =:= action; Kind =:= source ->
    with_type_name(Kind, Body, Cfg,
                   fun(Type, Name, Id) ->
                           check_channel(Kind, Type, Body, Cfg,
                                         fun(Conf) -> put_obj(Kind, Id, stamped(Conf, Type, Name, Now, Now), Cfg) end)
                   end);
change({update, Kind, Id, Body}, Cfg, Now) when Kind =:= action; Kind =:= source ->
    with_existing(Kind, Id, Cfg,
                  fun(#{<<"type">> := Type, <<"name">> := Name} = Old) ->
                          check_channel(Kind, Type, maps:without(?BOOKKEEPING, object(Body)), Cfg,
                                        fun(Conf) ->
                                                Created = maps:get(<<"created_at">>, Old, Now),
                                                put_obj(Kind, Id, stamped(Conf, Type, Name, Created, Now), Cfg)
                                        end)
                  end);
change({delete, action, Id, AlsoDeleteDeps}, Cfg, Now) ->
    with_existing(action, Id, Cfg,
                  fun(_) ->
                          case {rules_using(Id, Cfg), AlsoDeleteDeps} of
                              {[], _} ->
                                  {ok, del_obj(action, Id, Cfg), Id};
                              {Rules, true} ->
                                  Cfg1 = lists:foldl(fun(R, C) -> drop_action_ref(R, Id, C, Now) end, Cfg, Rules),
                                  {ok, del_obj(action, Id, Cfg1), Id};
                              {Rules, false} ->
                                  {error, (err(400, <<"BAD_REQUEST">>,
                                               <<"Cannot delete action while active rules are depending on it">>))
                                          #{extra => #{<<"rules">> => Rules}}}
                          end
                  end);
change({delete, source, Id}, Cfg, _Now) ->
    with_existing(source, Id, Cfg, fun(_) -> {ok, del_obj(source, Id, Cfg), Id} end);
change({create, rule, Body0}, Cfg, Now) ->
    Body = object(Body0),
    case maps:get(<<"id">>, Body, random_id()) of
        <<>> -> bad_request(<<"empty rule id is not allowed">>);
        Id when is_binary(Id) ->
            case maps:is_key(Id, maps:get(<<"rules">>, Cfg)) of
                true -> bad_request(<<"rule id already exists">>);
                false -> put_rule(Id, Body, Now, Now, Cfg)
            end;
        _ -> bad_request(<<"id: expected a string">>)
    end;
change({update, rule, Id, Body0}, Cfg, Now) ->
    %% PUT creates a rule that does not exist, as EMQX does
    Created = case find(rule, Id, Cfg) of
                  {ok, Old} -> maps:get(<<"created_at">>, Old, Now);
                  error -> Now
              end,
    case Id of
        <<>> -> bad_request(<<"empty rule id is not allowed">>);
        _ -> put_rule(Id, maps:remove(<<"id">>, object(Body0)), Created, Now, Cfg)
    end;
change({delete, rule, Id}, Cfg, _Now) ->
    with_existing(rule, Id, Cfg, fun(_) -> {ok, del_obj(rule, Id, Cfg), Id} end);
change(_, _, _) ->
    bad_request(<<"unsupported request">>).

%% ---- ids ----------------------------------------------------------------------

-spec id(binary(), binary()) -> binary().
id(Type, Name) -> <<Type/binary, ":", Name/binary>>.

%% @doc `type:name' with a known type, or the 404 EMQX answers.
-spec parse_id(connector | action | source, binary()) -> {ok, binary(), binary()} | {error, error()}.
parse_id(Kind, Id) ->
    What = case Kind of connector -> <<"connector">>; action -> <<"bridge">>; source -> <<"source">> end,
    case binary:split(Id, <<":">>) of
        [Type, Name] when Name =/= <<>>, Type =/= <<>> ->
            case lists:member(Type, ?S:types(Kind)) of
                true -> {ok, Type, Name};
                false -> {error, err(404, <<"NOT_FOUND">>, <<"Invalid ", What/binary,
                                                             " ID, unknown resource type: ", Type/binary>>)}
            end;
        _ ->
            {error, err(404, <<"NOT_FOUND">>, <<"Invalid ", What/binary,
                                                 " ID, should be of pattern {type}:{name}, but got: ", Id/binary>>)}
    end.

-spec find(kind(), binary(), map()) -> {ok, map()} | error.
find(Kind, Id, Cfg) -> maps:find(Id, maps:get(section(Kind), Cfg, #{})).

%% @doc Ids of the actions bound to connector Id (same type, named connector).
action_ids_of_connector(ConnId, Cfg) ->
    lists:sort([AId || {AId, #{<<"type">> := T, <<"connector">> := C}} <- maps:to_list(maps:get(<<"actions">>, Cfg)),
                       id(T, C) =:= ConnId]).

%% @doc Ids of the sources bound to (mqtt) connector Id.
source_ids_of_connector(ConnId, Cfg) ->
    lists:sort([SId || {SId, #{<<"type">> := T, <<"connector">> := C}} <- maps:to_list(maps:get(<<"sources">>, Cfg, #{})),
                       id(T, C) =:= ConnId]).

%% @doc Ids of the rules whose actions reference action Id, sorted.
rules_using(ActionId, Cfg) ->
    lists:sort([RId || {RId, R} <- maps:to_list(maps:get(<<"rules">>, Cfg)),
                       lists:member(ActionId, maps:get(<<"actions">>, R, []))]).

rule_ids(Cfg) -> lists:sort(maps:keys(maps:get(<<"rules">>, Cfg))).

%% @doc What the runtime needs of a stored object (bookkeeping removed).
runtime_conf(Obj) -> maps:without(?BOOKKEEPING ++ [<<"description">>, <<"tags">>], Obj).

%% ---- internals ----------------------------------------------------------------

section(connector) -> <<"connectors">>;
section(action) -> <<"actions">>;
section(source) -> <<"sources">>;
section(rule) -> <<"rules">>.

err(Status, Code, Msg) -> #{status => Status, code => Code, message => Msg}.
bad_request(M) -> {error, err(400, <<"BAD_REQUEST">>, M)}.

object(B) when is_map(B) -> B;
object(_) -> #{}.

with_type_name(Kind, Body, Cfg, Fun) when is_map(Body) ->
    case {maps:get(<<"type">>, Body, undefined), maps:get(<<"name">>, Body, undefined)} of
        {undefined, _} -> bad_request(<<"type: required">>);
        {_, undefined} -> bad_request(<<"name: required">>);
        {Type, Name} when is_binary(Type) ->
            case {lists:member(Type, ?S:types(Kind)), ?S:validate_name(Name)} of
                {false, _} -> bad_request(<<"type: expected one of ", (iolist_to_binary(lists:join(<<", ">>, ?S:types(Kind))))/binary, ", got: ",
                                            (iolist_to_binary(io_lib:format("~0p", [Type])))/binary>>);
                {_, {error, M}} -> bad_request(<<"name: ", M/binary>>);
                {true, ok} ->
                    Id = id(Type, Name),
                    case find(Kind, Id, Cfg) of
                        {ok, _} when Kind =:= connector -> bad_request_code(<<"connector already exists">>);
                        {ok, _} when Kind =:= source -> bad_request_code(<<"source already exists">>);
                        {ok, _} -> bad_request_code(<<"bridge already exists">>);
                        error -> Fun(Type, Name, Id)
                    end
            end;
        _ -> bad_request(<<"type: expected a string">>)
    end;
with_type_name(_, _, _, _) ->
    bad_request(<<"expected a JSON object">>).

bad_request_code(M) -> {error, err(400, <<"ALREADY_EXISTS">>, M)}.

with_existing(Kind, Id, Cfg, Fun) ->
    case find(Kind, Id, Cfg) of
        {ok, Old} -> Fun(Old);
        error -> {error, not_found(Kind, Id)}
    end.

%% @doc The 404 EMQX answers for an id that does not exist.
-spec not_found(kind(), binary()) -> error().
not_found(rule, _Id) -> err(404, <<"NOT_FOUND">>, <<"Rule Id Not Found">>);
not_found(Kind, Id) ->
    [Type, Name] = binary:split(Id, <<":">>),
    Msg = case Kind of
              connector -> [<<"Connector lookup failed: connector named '">>, Name, <<"' of type ">>,
                            Type, <<" does not exist.">>];
              action -> [<<"Bridge lookup failed: bridge named '">>, Name, <<"' of type ">>,
                         Type, <<" does not exist.">>];
              source -> [<<"Source lookup failed: source named '">>, Name, <<"' of type ">>,
                         Type, <<" does not exist.">>]
          end,
    err(404, <<"NOT_FOUND">>, iolist_to_binary(Msg)).

%% an action's or source's body checked against its connector (looked up
%% by the name in `connector'; a source's is an mqtt connector)
check_channel(Kind, Type, Body, Cfg, Fun) ->
    ConnType = case Kind of action -> Type; source -> <<"mqtt">> end,
    ConnConf = case maps:get(<<"connector">>, object(Body), undefined) of
                   C when is_binary(C), C =/= <<>> ->
                       case find(connector, id(ConnType, C), Cfg) of
                           {ok, Conn} -> Conn;
                           error -> undefined
                       end;
                   _ -> undefined
               end,
    Checked = case Kind of
                  action -> ?S:check_action(Type, Body, ConnConf);
                  source -> ?S:check_source(Type, Body, ConnConf)
              end,
    case Checked of
        {ok, Conf} -> Fun(Conf);
        {error, M} -> bad_request(M)
    end.

stamped(Conf, Type, Name, Created, Now) ->
    Conf#{<<"type">> => Type, <<"name">> => Name, <<"created_at">> => Created,
          <<"last_modified_at">> => Now}.

%% Kind: connector | action | source | rule
put_obj(Kind, Id, Obj, Cfg) when is_atom(Kind) -> put_obj(section(Kind), Id, Obj, Cfg);
put_obj(Section, Id, Obj, Cfg) ->
    {ok, Cfg#{Section => (maps:get(Section, Cfg, #{}))#{Id => Obj}}, Id}.

del_obj(Kind, Id, Cfg) when is_atom(Kind) -> del_obj(section(Kind), Id, Cfg);
del_obj(Section, Id, Cfg) ->
    Cfg#{Section => maps:remove(Id, maps:get(Section, Cfg))}.

touch(Obj, connector, _Now) -> Obj;
touch(Obj, _, Now) -> Obj#{<<"last_modified_at">> => Now}.

drop_action_ref(RuleId, ActionId, Cfg, Now) ->
    #{RuleId := R} = Rules = maps:get(<<"rules">>, Cfg),
    R1 = R#{<<"actions">> => lists:delete(ActionId, maps:get(<<"actions">>, R)),
            <<"last_modified_at">> => Now},
    Cfg#{<<"rules">> => Rules#{RuleId => R1}}.

put_rule(Id, Body, Created, Now, Cfg) ->
    case rule_fields(Id, Body) of
        {ok, Rule} ->
            put_obj(rule, Id, Rule#{<<"id">> => Id, <<"created_at">> => Created,
                                     <<"last_modified_at">> => Now}, Cfg);
        {error, _} = E -> E
    end.

rule_fields(Id, Body) ->
    Checks = [{<<"sql">>, required, fun is_binary/1, <<"expected a string">>},
              {<<"name">>, <<>>, fun is_binary/1, <<"expected a string">>},
              {<<"description">>, <<>>, fun is_binary/1, <<"expected a string">>},
              {<<"enable">>, true, fun is_boolean/1, <<"expected true or false">>},
              {<<"actions">>, [], fun valid_action_refs/1,
               <<"expected a list of \"type:name\" action ids of confluent_producer or kafka_producer actions">>},
              {<<"metadata">>, #{}, fun is_map/1, <<"expected an object">>}],
    Fields = lists:foldl(
               fun(_, {error, _} = E) -> E;
                  ({F, Default, Valid, Why}, Acc) ->
                       case maps:find(F, Body) of
                           error when Default =:= required -> bad_request(<<F/binary, ": required">>);
                           error -> Acc#{F => Default};
                           {ok, V} ->
                               case Valid(V) of
                                   true -> Acc#{F => V};
                                   false -> bad_request(<<F/binary, ": ", Why/binary>>)
                               end
                       end
               end, #{}, Checks),
    case Fields of
        {error, _} = E -> E;
        #{<<"sql">> := Sql} ->
            case emqx_confluent_nif:rule_compile(Id, Sql) of
                {ok, _} -> {ok, Fields};
                {error, #{message := M}} -> bad_request(<<"sql: ", M/binary>>)
            end
    end.

valid_action_refs(L) when is_list(L) ->
    lists:all(fun(A) when is_binary(A) ->
                      case parse_id(action, A) of
                          {ok, _, _} -> true;
                          _ -> false
                      end;
                 (_) -> false
              end, L);
valid_action_refs(_) -> false.

random_id() ->
    <<N:32>> = crypto:strong_rand_bytes(4),
    iolist_to_binary(io_lib:format("~8.16.0b", [N])).

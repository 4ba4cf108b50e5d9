%% @doc API keys for the REST API (rest-api.md §1.2): HTTP Basic with an API
%% key and secret. Keys come from, in this order of precedence:
%%   - the environment: EMQX_CONFLUENT_API_KEY and EMQX_CONFLUENT_API_SECRET;
%%   - the application env `api_keys' ([{Key, Secret, Role}] or [{Key, Secret}]);
%%   - a bootstrap file (app env `api_key_bootstrap_file' or
%%     EMQX_CONFLUENT_API_KEY_FILE), lines `key:secret[:role]' as EMQX's
%%     api_key.bootstrap_file;
%%   - otherwise one key is generated at first start and written to
%%     `<data_dir>/bootstrap_api_key' (mode 0600) in that same format.
%% Roles: administrator (everything), viewer (GET only), publisher (nothing
%% here). Secrets are kept as SHA-256 digests and compared in constant time.
-module(emqx_confluent_auth).

-export([init/1, check/2, parse_bootstrap/1]).

-define(KEYS, {?MODULE, keys}).

%% @doc Loads the keys; returns the file of a generated key, if one was made.
-spec init(file:filename()) -> ok | {generated, file:filename()}.
init(DataDir) ->
    {Keys, Result} =
        case env_keys() ++ app_keys() ++ file_keys() of
            [] ->
                File = filename:join(DataDir, "bootstrap_api_key"),
                case file:read_file(File) of
                    {ok, Bin} -> {parse_bootstrap(Bin), ok};
                    {error, enoent} ->
                        Line = iolist_to_binary([hex(8), ":", hex(24), ":administrator\n"]),
                        ok = filelib:ensure_dir(File),
                        ok = file:write_file(File, Line),
                        ok = file:change_mode(File, 8#600),
                        {parse_bootstrap(Line), {generated, File}}
                end;
            Found ->
                {Found, ok}
        end,
    persistent_term:put(?KEYS, maps:from_list([{K, {crypto:hash(sha256, S), R}} || {K, S, R} <- Keys])),
    Result.

env_keys() ->
    case {os:getenv("EMQX_CONFLUENT_API_KEY"), os:getenv("EMQX_CONFLUENT_API_SECRET")} of
        {K, S} when is_list(K), is_list(S), K =/= "", S =/= "" ->
            [{list_to_binary(K), list_to_binary(S), administrator}];
        _ -> []
    end.

app_keys() ->
    [case T of
         {K, S} -> {bin(K), bin(S), administrator};
         {K, S, R} -> {bin(K), bin(S), role(bin(R))}
     end || T <- application:get_env(emqx_confluent, api_keys, [])].

file_keys() ->
    File = case os:getenv("EMQX_CONFLUENT_API_KEY_FILE") of
               F when is_list(F), F =/= "" -> F;
               _ -> application:get_env(emqx_confluent, api_key_bootstrap_file, undefined)
           end,
    case File of
        undefined -> [];
        _ ->
            case file:read_file(File) of
                {ok, Bin} -> parse_bootstrap(Bin);
                {error, E} ->
                    logger:error("emqx_confluent: cannot read the API key file ~s: ~0p", [File, E]),
                    []
            end
    end.

%% @doc `key:secret[:role]' lines; blank lines and malformed ones are skipped.
parse_bootstrap(Bin) ->
    [case binary:split(L, <<":">>, [global]) of
         [K, S] -> {K, S, administrator};
         [K, S, R | _] -> {K, S, role(R)}
     end || L0 <- binary:split(Bin, [<<"\n">>, <<"\r\n">>], [global, trim_all]),
            L <- [string:trim(L0)],
            length(binary:split(L, <<":">>, [global])) >= 2].

role(<<"viewer">>) -> viewer;
role(<<"publisher">>) -> publisher;
role(_) -> administrator.

bin(B) when is_binary(B) -> B;
bin(L) when is_list(L) -> list_to_binary(L);
bin(A) when is_atom(A) -> atom_to_binary(A).

hex(N) -> string:lowercase(binary:encode_hex(crypto:strong_rand_bytes(N div 2))).

%% @doc ok, or the 401/403 to answer (status, code, message, extra headers).
-spec check(string() | undefined, string()) -> ok | {error, pos_integer(), binary(), binary(), list()}.
check(undefined, _) -> header_error();
check(Header, Method) ->
    case string:split(string:trim(Header), " ") of
        [Scheme, Cred] ->
            case string:lowercase(Scheme) of
                "basic" -> basic(Cred, Method);
                "bearer" -> {error, 401, <<"BAD_TOKEN">>, <<"Bearer tokens are not supported; use an API key">>, []};
                _ -> header_error()
            end;
        _ -> header_error()
    end.

header_error() ->
    {error, 401, <<"AUTHORIZATION_HEADER_ERROR">>,
     <<"Support authorization: basic/bearer ">>, [{"www-authenticate", "Basic Realm=\"emqx-dashboard\""}]}.

basic(Cred, Method) ->
    Decoded = try base64:decode(string:trim(Cred)) catch _:_ -> <<>> end,
    case binary:split(Decoded, <<":">>) of
        [Key, Secret] ->
            case maps:find(Key, persistent_term:get(?KEYS, #{})) of
                {ok, {Hash, Role}} ->
                    case crypto:hash_equals(Hash, crypto:hash(sha256, Secret)) of
                        true -> allowed(Role, Method);
                        false -> bad_key()
                    end;
                error ->
                    _ = crypto:hash_equals(crypto:hash(sha256, <<>>), crypto:hash(sha256, Secret)),
                    bad_key()
            end;
        _ -> bad_key()
    end.

bad_key() -> {error, 401, <<"BAD_API_KEY_OR_SECRET">>, <<"Check api_key/api_secret">>, []}.

allowed(administrator, _) -> ok;
allowed(viewer, "GET") -> ok;
allowed(_, _) -> {error, 403, <<"UNAUTHORIZED_ROLE">>, <<"Unauthorized Role">>, []}.

%% @doc SASL/OAUTHBEARER tokens for Kafka connectors with
%% `authentication: {mechanism: oauth, ...}': the OAuth 2.0
%% client-credentials grant (RFC 6749 §4.4), done here because Debian's
%% librdkafka has no OIDC client of its own.
%%
%% The C side (c_src/kafka/koauth.c) keeps one token store per distinct
%% credentials and asks this process for a token when a producer has none or
%% its token is 80 % through its life: `{ec_oauth_fetch, Id, Request}'. One
%% worker per store POSTs the form to the token endpoint and answers with
%% emqx_confluent_nif:oauth_token/2; the token reaches every producer of the
%% store at once. Tokens never leave the node and are never logged.
-module(emqx_confluent_oauth).
-behaviour(gen_server).

-export([start_link/0, fetch/1, principal_and_expiry/3]).
-export([init/1, handle_call/3, handle_cast/2, handle_info/2, terminate/2]).

-define(NIF, emqx_confluent_nif).
-define(CONNECT_TIMEOUT, 15000).
-define(TIMEOUT, 30000).
%% a token endpoint that gives no lifetime: assume an hour
-define(DEFAULT_LIFETIME_S, 3600).

start_link() ->
    gen_server:start_link({local, ?MODULE}, ?MODULE, [], []).

init([]) ->
    process_flag(trap_exit, true),
    ok = ?NIF:oauth_owner(self()),
    {ok, #{}}.                                  % worker pid => store id

handle_call(_Req, _From, St) -> {reply, {error, unknown_call}, St}.
handle_cast(_Msg, St) -> {noreply, St}.

handle_info({ec_oauth_fetch, Id, Req}, St) ->
    case lists:member(Id, maps:values(St)) of
        true -> {noreply, St};                  % already fetching for that store
        false ->
            Pid = spawn_link(fun() -> _ = ?NIF:oauth_token(Id, fetch(Req)) end),
            {noreply, St#{Pid => Id}}
    end;
handle_info({'EXIT', Pid, Reason}, St) ->
    case maps:take(Pid, St) of
        {Id, St1} ->
            Reason =:= normal orelse
                ?NIF:oauth_token(Id, {error, <<"OAuth token fetch crashed">>}),
            {noreply, St1};
        error -> {noreply, St}
    end;
handle_info(_Msg, St) -> {noreply, St}.

terminate(_Reason, _St) ->
    ?NIF:oauth_owner(undefined).

%% @doc One client-credentials request: `{ok, Token, ExpiresAtMs, Principal}'
%% or `{error, Reason}' (a binary an operator can act on; no secrets in it).
-spec fetch(#{endpoint_uri := binary(), client_id := binary(), client_secret := binary(),
              scope := binary()}) ->
          {ok, binary(), integer(), binary()} | {error, binary()}.
fetch(#{endpoint_uri := Url, client_id := ClientId, client_secret := Secret, scope := Scope}) ->
    Form = [{<<"grant_type">>, <<"client_credentials">>}, {<<"client_id">>, ClientId},
            {<<"client_secret">>, Secret}] ++ [{<<"scope">>, Scope} || Scope =/= <<>>],
    Body = uri_string:compose_query(Form),
    Req = {binary_to_list(Url), [{"accept", "application/json"}],
           "application/x-www-form-urlencoded", Body},
    HttpOpts = [{timeout, ?TIMEOUT}, {connect_timeout, ?CONNECT_TIMEOUT} | ssl_opts(Url)],
    Now = erlang:system_time(millisecond),
    try httpc:request(post, Req, HttpOpts, [{body_format, binary}]) of
        {ok, {{_, 200, _}, _Headers, RespBody}} -> token(RespBody, ClientId, Now, Url);
        {ok, {{_, Status, _}, _Headers, RespBody}} ->
            err("token endpoint ~s answered HTTP ~b: ~s", [Url, Status, snippet(RespBody)]);
        {error, Reason} ->
            err("token endpoint ~s: ~s", [Url, why(Reason)])
    catch
        C:E -> err("token endpoint ~s: ~0p:~0p", [Url, C, E])
    end.

%% the part of an httpc error an operator acts on, short enough to survive
%% librdkafka's error line (connect failures nest it; TLS alerts carry a
%% long text after the alert's name)
why({failed_connect, Info}) ->
    case lists:keyfind(inet, 1, Info) of
        {inet, _, R} -> why(R);
        false -> io_lib:format("~0p", [Info])
    end;
why({tls_alert, {Alert, _Text}}) -> io_lib:format("TLS alert ~s", [Alert]);
why(R) -> io_lib:format("~0p", [R]).

ssl_opts(<<"https://", _/binary>>) ->
    _ = application:ensure_all_started(ssl),
    [{ssl, [{verify, verify_peer}, {cacerts, public_key:cacerts_get()}, {depth, 10},
            {customize_hostname_check,
             [{match_fun, public_key:pkix_verify_hostname_match_fun(https)}]}]}];
ssl_opts(_) -> [].

token(RespBody, ClientId, Now, Url) ->
    case ?NIF:json_decode(RespBody) of
        {ok, #{<<"access_token">> := Token} = Resp} when is_binary(Token), Token =/= <<>> ->
            {Principal, ExpiresAt} =
                principal_and_expiry(Token, maps:get(<<"expires_in">>, Resp, undefined), Now),
            {ok, Token, ExpiresAt, case Principal of undefined -> ClientId; P -> P end};
        {ok, _} -> err("token endpoint ~s: the answer has no access_token", [Url]);
        {error, _} -> err("token endpoint ~s: the answer is not JSON: ~s", [Url, snippet(RespBody)])
    end.

%% @doc The principal librdkafka reports and when the token expires: the
%% endpoint's expires_in, else the token's own `exp' (a JWT), else an hour.
%% The principal is the JWT's `sub' when the token is a JWT.
-spec principal_and_expiry(binary(), term(), integer()) -> {binary() | undefined, integer()}.
principal_and_expiry(Token, ExpiresIn, Now) ->
    Claims = jwt_claims(Token),
    Sub = case maps:get(<<"sub">>, Claims, undefined) of
              S when is_binary(S), S =/= <<>> -> S;
              _ -> undefined
          end,
    Expiry = case seconds(ExpiresIn) of
                 Secs when is_integer(Secs), Secs > 0 -> Now + Secs * 1000;
                 _ ->
                     case maps:get(<<"exp">>, Claims, undefined) of
                         Exp when is_number(Exp) -> round(Exp * 1000);
                         _ -> Now + ?DEFAULT_LIFETIME_S * 1000
                     end
             end,
    {Sub, Expiry}.

seconds(N) when is_integer(N) -> N;
seconds(N) when is_float(N) -> trunc(N);
seconds(B) when is_binary(B) ->
    try binary_to_integer(B) catch error:badarg -> undefined end;
seconds(_) -> undefined.

jwt_claims(Token) ->
    case binary:split(Token, <<".">>, [global]) of
        [_Header, Payload | _] ->
            try
                Json = base64url_decode(Payload),
                case ?NIF:json_decode(Json) of
                    {ok, M} when is_map(M) -> M;
                    _ -> #{}
                end
            catch _:_ -> #{}
            end;
        _ -> #{}
    end.

base64url_decode(B) ->
    Std = << <<(case C of $- -> $+; $_ -> $/; _ -> C end)>> || <<C>> <= B >>,
    Pad = case byte_size(Std) rem 4 of 0 -> <<>>; 2 -> <<"==">>; 3 -> <<"=">> end,
    base64:decode(<<Std/binary, Pad/binary>>).

snippet(B) when byte_size(B) > 200 -> [binary:part(B, 0, 200), "..."];
snippet(B) -> B.

err(Fmt, Args) ->
    Msg = iolist_to_binary(io_lib:format(Fmt, Args)),
    {error, case byte_size(Msg) > 500 of true -> binary:part(Msg, 0, 500); false -> Msg end}.

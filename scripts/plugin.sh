#!/bin/sh
# Builds the EMQX plugin package (emqx-plugin.md §2):
#   _build/plugin/emqx_confluent-<vsn>.tar.gz  (+ .sha256 next to it)
# with release.json, README.md and emqx_confluent-<app_vsn>/{ebin,priv}.
# Run from the project root after `rebar3 compile` (make plugin does both).
set -eu
NAME=emqx_confluent
APP_SRC=erl_src/$NAME.app.src
VSN=$(sed -n 's/.*{vsn, *"\([^"]*\)".*/\1/p' "$APP_SRC")
EBIN=_build/default/lib/$NAME/ebin
[ -f "$EBIN/$NAME.app" ] || { echo "plugin.sh: $EBIN/$NAME.app missing; run rebar3 compile" >&2; exit 1; }
[ -f priv/emqx_confluent_nif.so ] || { echo "plugin.sh: priv/emqx_confluent_nif.so missing; run make" >&2; exit 1; }

OUT=_build/plugin
REL=$NAME-$VSN
STAGE=$OUT/$REL
rm -rf "$STAGE" "$OUT/$REL.tar.gz" "$OUT/$REL.sha256"
mkdir -p "$STAGE/$NAME-$VSN/ebin" "$STAGE/$NAME-$VSN/priv/bin"
cp "$EBIN"/*.beam "$EBIN/$NAME.app" "$STAGE/$NAME-$VSN/ebin/"
cp priv/emqx_confluent_nif.so "$STAGE/$NAME-$VSN/priv/"
cp priv/bin/rule-test "$STAGE/$NAME-$VSN/priv/bin/"
cp README.md "$STAGE/"

OTP=$(erl -noshell -eval 'io:format("~s", [erlang:system_info(otp_release)]), halt().')
GIT_REF=$(git rev-parse HEAD 2>/dev/null || echo unknown)
DATE=$(date -u +%Y-%m-%d)
cat > "$STAGE/release.json" <<JSON
{
  "name": "$NAME",
  "rel_vsn": "$VSN",
  "rel_apps": ["$NAME-$VSN"],
  "description": "Stream MQTT data to Confluent Cloud and Apache Kafka: EMQX rule SQL, Kafka sink templates and a librdkafka producer in a C NIF",
  "authors": "emqx_confluent developers",
  "builder": {"name": "emqx_confluent developers", "contact": "", "website": ""},
  "repo": "",
  "functionality": "Data integration",
  "compatibility": {"emqx": "~> 5.4"},
  "git_ref": "$GIT_REF",
  "git_commit_or_build_date": "$DATE",
  "built_on_otp_release": "$OTP",
  "metadata_vsn": "0.2.0",
  "hidden": false
}
JSON
tar -C "$OUT" -czf "$OUT/$REL.tar.gz" "$REL"
(cd "$OUT" && sha256sum "$REL.tar.gz" | cut -d' ' -f1 > "$REL.sha256")
echo "$OUT/$REL.tar.gz"

# testca.sh - sourced by kafka.sh and mqtt.sh: a throwaway test CA and one
# server certificate for localhost / 127.0.0.1 signed by it.
#   testca_make DIR NAME CN   -> DIR/ca.pem, DIR/ca.key, DIR/NAME.pem, DIR/NAME.key
testca_make() {
  local d=$1 name=$2 cn=$3
  mkdir -p "$d"
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=$cn" \
    -keyout "$d/ca.key" -out "$d/ca.pem" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
    -keyout "$d/$name.key" -out "$d/$name.csr" 2>/dev/null
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' > "$d/san.ext"
  openssl x509 -req -in "$d/$name.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial \
    -days 3650 -extfile "$d/san.ext" -out "$d/$name.pem" 2>/dev/null
}

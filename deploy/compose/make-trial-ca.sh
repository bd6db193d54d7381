#!/bin/sh
# Make a self-signed CA and a broker certificate signed by it, for a trial of compose.yaml:
#   ./make-trial-ca.sh BROKER-HOST-NAME [OUT-DIR]      (OUT-DIR: tls/ beside this script)
# writes ca.pem (give it to every cabinet: [mqtt.tls] ca = ...), ca.key (keep it offline),
# server.pem and server.key (Mosquitto's, mounted at /mosquitto/tls). In production, use
# certificates from your own CA or a public one instead; the file names stay the same.
set -eu

host="${1:?usage: make-trial-ca.sh BROKER-HOST-NAME [OUT-DIR]}"
out="${2:-$(dirname "$0")/tls}"
days=825

umask 077
mkdir -p "$out"
cd "$out"
openssl req -x509 -newkey rsa:3072 -sha256 -days "$days" -nodes \
    -subj "/CN=parcel-lockers trial CA" -keyout ca.key -out ca.pem \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
openssl req -newkey rsa:3072 -sha256 -nodes -subj "/CN=$host" \
    -keyout server.key -out server.csr
printf 'subjectAltName=DNS:%s\nbasicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth\n' \
    "$host" > server.ext
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days "$days" \
    -sha256 -extfile server.ext -out server.pem
rm -f server.csr server.ext ca.srl
chmod 0644 ca.pem server.pem
echo "wrote $out: ca.pem (to the cabinets), server.pem and server.key (to Mosquitto: chown 1883)"

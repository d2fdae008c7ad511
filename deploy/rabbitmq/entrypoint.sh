#!/usr/bin/env bash
# The RabbitMQ container's entry point: writes the administrator (RABBITMQ_DEFAULT_USER,
# RABBITMQ_DEFAULT_PASS) as a definitions file and, for a cluster's node, the cluster's Erlang
# cookie (SAGA_RABBITMQ_COOKIE), then hands over to the image's own entry point.
#
# Why: a node that imports definitions at boot (load_definitions, deploy/rabbitmq/rabbitmq.conf)
# never seeds the default user ("Will not seed default virtual host and user: have definitions to
# load"), so RABBITMQ_DEFAULT_USER/PASS alone would be silently ignored. The file is written on
# every start, so a new RABBITMQ_DEFAULT_PASS takes effect at the next restart. Only the salted
# hash is written, as in the service users' definitions file.
set -euo pipefail

admin_file=/etc/rabbitmq/definitions.d/20-admin.json
user=${RABBITMQ_DEFAULT_USER:?RABBITMQ_DEFAULT_USER must be set}
password=${RABBITMQ_DEFAULT_PASS:?RABBITMQ_DEFAULT_PASS must be set}

# The name goes into JSON unescaped, so it may hold only characters that need no escaping.
if [[ ! $user =~ ^[A-Za-z0-9._@-]+$ ]]; then
    echo >&2 "RABBITMQ_DEFAULT_USER may hold only letters, digits and . _ @ -"
    exit 1
fi
if [ "$user" = guest ]; then
    echo >&2 "RABBITMQ_DEFAULT_USER must not be guest: its password is public"
    exit 1
fi

# RabbitMQ's rabbit_password_hashing_sha256: base64(salt + sha256(salt + utf8 password)),
# with a random 4-byte salt.
work=$(mktemp -d)
head -c 4 /dev/urandom > "$work/salt"
{ cat "$work/salt"; printf '%s' "$password"; } | openssl dgst -sha256 -binary > "$work/digest"
hash=$(cat "$work/salt" "$work/digest" | base64 -w 0)
rm -rf "$work"

mkdir -p "$(dirname "$admin_file")"
(
    umask 077
    cat > "$admin_file" <<JSON
{
  "vhosts": [{"name": "/"}],
  "users": [
    {
      "name": "$user",
      "password_hash": "$hash",
      "hashing_algorithm": "rabbit_password_hashing_sha256",
      "tags": ["administrator"]
    }
  ],
  "permissions": [
    {"user": "$user", "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"}
  ]
}
JSON
)
# The image's entry point drops to the rabbitmq user, which must be able to read the file.
if [ "$(id -u)" = 0 ]; then
    chown rabbitmq:rabbitmq "$admin_file"
fi

# A cluster's nodes share one Erlang cookie (docker-compose.cluster.yml sets it); a node alone
# makes its own.
if [ -n "${SAGA_RABBITMQ_COOKIE:-}" ]; then
    cookie=/var/lib/rabbitmq/.erlang.cookie
    rm -f "$cookie"
    (umask 077 && printf '%s' "$SAGA_RABBITMQ_COOKIE" > "$cookie")
    chmod 0400 "$cookie"
    if [ "$(id -u)" = 0 ]; then
        chown rabbitmq:rabbitmq "$cookie"
    fi
fi

exec docker-entrypoint.sh "$@"

#!/usr/bin/env bash
# The entry point of saga-offline/rabbitmq:4, a stand-in for the official rabbitmq:4.1-management
# image: the same documented behaviour, written for this image (see the Dockerfile beside it).
#
#   docker-entrypoint.sh rabbitmq-server   as root: hands /var/lib/rabbitmq to rabbitmq and runs
#                                          again as rabbitmq; then the server, in the foreground
#   docker-entrypoint.sh rabbitmq...       any other RabbitMQ command, also as rabbitmq
#   docker-entrypoint.sh COMMAND ...       run COMMAND as it is
set -euo pipefail

if [[ ${1:-} == rabbitmq* ]] && [ "$(id -u)" = 0 ]; then
    if [ "$1" = rabbitmq-server ]; then
        # The Erlang cookie, made here before anything else can make it: a healthcheck's CLI
        # (root, HOME=/var/lib/rabbitmq) that ran before the node made its own would leave one
        # that root owns and the node cannot read (eacces, the node stops).
        cookie=/var/lib/rabbitmq/.erlang.cookie
        if [ ! -e "$cookie" ]; then
            value=$(head -c 4096 /dev/urandom | tr -dc 'A-Z' | cut -c 1-20)
            (umask 077 && printf '%s' "$value" > "$cookie")
            chmod 0400 "$cookie"
            chown rabbitmq:rabbitmq "$cookie"
        fi
        find /var/lib/rabbitmq \! -user rabbitmq -exec chown rabbitmq '{}' +
    fi
    exec gosu rabbitmq "${BASH_SOURCE[0]}" "$@"
fi

# The official image refuses these since 3.9: they belong in a configuration file now.
deprecated=(
    RABBITMQ_DEFAULT_PASS_FILE RABBITMQ_DEFAULT_USER_FILE
    RABBITMQ_MANAGEMENT_SSL_CACERTFILE RABBITMQ_MANAGEMENT_SSL_CERTFILE RABBITMQ_MANAGEMENT_SSL_DEPTH
    RABBITMQ_MANAGEMENT_SSL_FAIL_IF_NO_PEER_CERT RABBITMQ_MANAGEMENT_SSL_KEYFILE
    RABBITMQ_MANAGEMENT_SSL_VERIFY RABBITMQ_SSL_CACERTFILE RABBITMQ_SSL_CERTFILE RABBITMQ_SSL_DEPTH
    RABBITMQ_SSL_FAIL_IF_NO_PEER_CERT RABBITMQ_SSL_KEYFILE RABBITMQ_SSL_VERIFY
    RABBITMQ_VM_MEMORY_HIGH_WATERMARK
)
found=
for name in "${deprecated[@]}"; do
    if [ -n "${!name:-}" ]; then
        echo >&2 "error: $name is set but deprecated"
        found=1
    fi
done
if [ -n "$found" ]; then
    echo >&2 'error: deprecated environment variables detected: use a configuration file in /etc/rabbitmq/conf.d instead'
    exit 1
fi

# The node is rabbit@<short hostname>, unless the hostname is a long one (a FQDN).
if [ -z "${RABBITMQ_USE_LONGNAME:-}" ] && [ "$(hostname)" != "$(hostname -s)" ]; then
    export RABBITMQ_USE_LONGNAME=true
fi

# Makes rabbitmq-server exec the Erlang VM (no wrapper shell left between it and the signals).
export RUNNING_UNDER_SYSTEMD=true

exec "$@"

#!/usr/bin/env bash
# Builds, from Debian's packages alone, stand-ins for the three official images the saga's
# docker-compose.yml and Dockerfile use, for a machine that reaches Debian's mirrors and PyPI
# but no image registry:
#
#   saga-offline/python:3.11     for python:3.11-slim          (bookworm's Python 3.11)
#   saga-offline/postgres:15     for postgres:15               (bookworm's PostgreSQL 15)
#   saga-offline/rabbitmq:4      for rabbitmq:4.1-management   (trixie's RabbitMQ 4.0)
#   saga-offline/prometheus:2    for prom/prometheus           (bookworm's Prometheus 2.42)
#   saga-offline/phoenix:20      for arizephoenix/phoenix      (PyPI's arize-phoenix; the
#                                tracing profile's trace viewer, not part of `all`)
#
# on top of two bases it makes itself when they are missing:
#
#   saga-offline/debian-rootfs:SUITE  debootstrap --variant=minbase SUITE, docker import'ed
#   saga-offline/debian:SUITE         that, made slim and brought up to date (debian/Dockerfile)
#
# Nothing is ever tagged with an official image's name: a machine that can pull the real images
# keeps using them. Each image's Dockerfile says which contract of the official image it keeps.
#
# Usage: deploy/images/build.sh [TARGET...]
#   TARGET: bases python postgres rabbitmq prometheus phoenix all (default: all but phoenix)
#
# Settings (environment):
#   MIRROR            Debian mirror         (default http://deb.debian.org/debian)
#   SECURITY_MIRROR   security mirror       (default http://deb.debian.org/debian-security)
#   PREFIX            image name prefix     (default saga-offline)
#   ROOTFS_DIR        debootstrap work dir  (default /var/tmp/saga-offline-rootfs; removed after)
#   REBUILD_BASES=1   debootstrap again even when the base images exist
#   NO_CACHE=1        build the images without the build cache
#   DOCKER            docker client to run  (default docker)
#   PIP_CA_FILE       CA bundle for pip     (default /etc/ssl/certs/ca-certificates.crt)
#
# Needs root (debootstrap), debootstrap, tar and a running Docker engine. The stand-in builds use
# no BuildKit feature, so the classic builder (a client without buildx) builds them too.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
: "${MIRROR:=http://deb.debian.org/debian}"
: "${SECURITY_MIRROR:=http://deb.debian.org/debian-security}"
: "${PREFIX:=saga-offline}"
: "${ROOTFS_DIR:=/var/tmp/saga-offline-rootfs}"
: "${REBUILD_BASES:=0}"
: "${NO_CACHE:=0}"
: "${DOCKER:=docker}"

timings=()
log() { printf '\n==> %s\n' "$*" >&2; }
timed() { # timed LABEL COMMAND...: runs COMMAND, records how long it took
    local label=$1 start=$SECONDS
    shift
    "$@"
    timings+=("$(printf '%-34s %4ds' "$label" $((SECONDS - start)))")
}
have_image() { "$DOCKER" image inspect "$1" > /dev/null 2>&1; }

build() { # build TAG CONTEXT [docker build args...]
    local tag=$1 context=$2
    shift 2
    local args=(--pull=false --force-rm --tag "$tag")
    [ "$NO_CACHE" = 1 ] && args+=(--no-cache)
    log "docker build $tag ($context)"
    "$DOCKER" build "${args[@]}" "$@" "$context"
}

# debootstrap SUITE into a folder, keep it free of the host's state, and import it as an image.
make_rootfs() {
    local suite=$1 dir="$ROOTFS_DIR/$1"
    command -v debootstrap > /dev/null || { echo >&2 'debootstrap is missing: apt-get install debootstrap'; exit 1; }
    [ "$(id -u)" = 0 ] || { echo >&2 'debootstrap needs root'; exit 1; }
    rm -rf "$dir"
    mkdir -p "$dir"
    log "debootstrap --variant=minbase $suite $dir $MIRROR"
    debootstrap --variant=minbase --components=main "$suite" "$dir" "$MIRROR"
    # What debootstrap leaves behind that no image should carry: the downloaded packages and
    # lists, and the host's own name and resolver (Docker supplies both at run time).
    rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/* "$dir"/debootstrap
    rm -f "$dir"/etc/resolv.conf "$dir"/etc/hostname "$dir"/etc/machine-id
    : > "$dir"/etc/resolv.conf
    log "docker import $PREFIX/debian-rootfs:$suite"
    tar --numeric-owner --xattrs --acls -C "$dir" -c . |
        "$DOCKER" import --change 'CMD ["bash"]' --change 'ENV LANG=C.UTF-8' \
            --message "debootstrap --variant=minbase $suite $MIRROR" - "$PREFIX/debian-rootfs:$suite"
    rm -rf "$dir"
    rmdir "$ROOTFS_DIR" 2> /dev/null || true
}

declare -A bases_made=()
make_base() {
    local suite=$1
    [ -z "${bases_made[$suite]:-}" ] || return 0
    bases_made[$suite]=1
    if [ "$REBUILD_BASES" = 1 ] || ! have_image "$PREFIX/debian-rootfs:$suite"; then
        timed "rootfs $suite (debootstrap+import)" make_rootfs "$suite"
    fi
    if [ "$REBUILD_BASES" = 1 ] || ! have_image "$PREFIX/debian:$suite"; then
        timed "image $PREFIX/debian:$suite" build "$PREFIX/debian:$suite" "$here/debian" \
            --build-arg "ROOTFS=$PREFIX/debian-rootfs:$suite" --build-arg "SUITE=$suite" \
            --build-arg "MIRROR=$MIRROR" --build-arg "SECURITY_MIRROR=$SECURITY_MIRROR"
    fi
}

build_python() {
    make_base bookworm
    timed "image $PREFIX/python:3.11" build "$PREFIX/python:3.11" "$here/python" \
        --build-arg "BASE=$PREFIX/debian:bookworm"
}

build_postgres() {
    make_base bookworm
    timed "image $PREFIX/postgres:15" build "$PREFIX/postgres:15" "$here/postgres" \
        --build-arg "BASE=$PREFIX/debian:bookworm"
}

build_prometheus() {
    make_base bookworm
    timed "image $PREFIX/prometheus:2" build "$PREFIX/prometheus:2" "$here/prometheus" \
        --build-arg "BASE=$PREFIX/debian:bookworm"
}

# The trace viewer comes from PyPI: pip needs the machine's CA bundle, put in a copy of the
# build context (the classic builder has no build secrets).
build_phoenix() {
    have_image "$PREFIX/python:3.11" || build_python
    local context; context=$(mktemp -d)
    cp "$here/phoenix/Dockerfile" "$context/"
    cp "${PIP_CA_FILE:-/etc/ssl/certs/ca-certificates.crt}" "$context/pip-ca.crt"
    timed "image $PREFIX/phoenix:20" build "$PREFIX/phoenix:20" "$context" \
        --build-arg "BASE=$PREFIX/python:3.11"
    rm -rf "$context"
}

build_rabbitmq() {
    make_base trixie
    timed "image $PREFIX/rabbitmq:4" build "$PREFIX/rabbitmq:4" "$here/rabbitmq" \
        --build-arg "BASE=$PREFIX/debian:trixie"
}

[ $# -gt 0 ] || set -- all
for target; do
    case "$target" in
        bases) make_base bookworm; make_base trixie ;;
        python) build_python ;;
        postgres) build_postgres ;;
        rabbitmq) build_rabbitmq ;;
        prometheus) build_prometheus ;;
        phoenix) build_phoenix ;;
        all) build_python; build_postgres; build_rabbitmq; build_prometheus ;;
        *) echo >&2 "unknown target: $target (bases, python, postgres, rabbitmq, prometheus, phoenix, all)"; exit 2 ;;
    esac
done

log 'timings'
printf '  %s\n' "${timings[@]:-nothing to build}" >&2
"$DOCKER" image ls "$PREFIX/*" >&2

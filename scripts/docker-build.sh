#!/usr/bin/env bash
# Builds Kiln's image as kiln:local from the repository's Dockerfile on a machine that
# reaches Debian's archive and crates.io but no container registry:
#   - debian:bookworm-slim is made with debootstrap (minbase, without docs, man pages
#     and locales, as the official slim image) and imported;
#   - rust:1.95-slim-bookworm is the same Debian with gcc and this machine's own Rust
#     toolchain (the one `rustc` here runs);
#   - the crates come from `cargo vendor` into vendor/, which the Dockerfile prefers to
#     the registry when present.
# Base images already present (pulled, or made by an earlier run) are kept. Installs
# debootstrap from Debian if missing.
#
# With --binary, the image is the Dockerfile's runtime stage with a `kiln` binary built on
# this machine (stripped) instead of the build stage's: no Rust build inside the image.
# The test suite uses it with the test build's binary, so a run compiles Kiln once.
#
#   scripts/docker-build.sh [DOCKER_BUILD_ARGS...]     e.g. --build-arg FEATURES=wgpu
#   scripts/docker-build.sh --binary PATH [DOCKER_BUILD_ARGS...]
#   scripts/docker-build.sh --base-images-only         only the two base images
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/setup.sh
base_images_only=false binary=""
if [ "${1:-}" = --base-images-only ]; then
    base_images_only=true
    shift
elif [ "${1:-}" = --binary ]; then
    binary=${2:?--binary needs the path of a kiln binary}
    shift 2
fi
tag=${KILN_IMAGE:-kiln:local}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
runtime_image=debian:bookworm-slim
rust_image=rust:1.95-slim-bookworm

have_image() { docker image inspect "$1" >/dev/null 2>&1; }

# debian_rootfs DIR [PACKAGES]: minimal Debian bookworm in DIR, slimmed.
debian_rootfs() {
    need_packages debootstrap
    local include=()
    [ -n "${2:-}" ] && include=(--include="$2")
    debootstrap --variant=minbase "${include[@]}" bookworm "$1" "$mirror" >/dev/null
    rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin "$1"/var/cache/apt/archives/*.deb \
        "$1"/usr/share/doc/* "$1"/usr/share/man/* "$1"/usr/share/info/* "$1"/usr/share/locale/*
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if ! have_image "$runtime_image"; then
    echo "making $runtime_image with debootstrap"
    debian_rootfs "$work/runtime"
    tar -C "$work/runtime" -c . | docker import --change 'CMD ["bash"]' - "$runtime_image" >/dev/null
fi

if ! have_image "$rust_image"; then
    echo "making $rust_image from this machine's Rust toolchain"
    debian_rootfs "$work/rust" gcc,libc6-dev,ca-certificates
    sysroot=$(rustc --print sysroot)
    mkdir -p "$work/rust/usr/local/rust"
    cp -a "$sysroot/bin" "$sysroot/lib" "$sysroot/libexec" "$work/rust/usr/local/rust/"
    tar -C "$work/rust" -c . | docker import \
        --change 'ENV PATH=/usr/local/cargo/bin:/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV CARGO_HOME=/usr/local/cargo' \
        --change 'CMD ["bash"]' - "$rust_image" >/dev/null
fi

$base_images_only && exit 0

# The classic builder: the Dockerfile needs nothing newer, and it works with every Docker
# CLI, with or without the buildx plugin. It builds the stages in order and stops at
# --target, so the runtime stage alone never starts the Rust build.
export DOCKER_BUILDKIT=0
if [ -n "$binary" ]; then
    runtime=$(docker build --quiet --target runtime "$@" .)
    mkdir -p "$work/context"
    strip -o "$work/context/kiln" "$binary"
    printf 'FROM %s\nCOPY kiln /usr/local/bin/kiln\n' "$runtime" \
        | docker build --tag "$tag" --file - "$work/context"
else
    echo "vendoring crates into vendor/"
    cargo vendor --locked --quiet --no-delete vendor >/dev/null
    docker build --tag "$tag" "$@" .
fi
docker image ls "$tag"

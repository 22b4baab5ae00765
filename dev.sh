#!/usr/bin/env bash
# certgate's two entry points on a Debian/Ubuntu machine with Rust:
#   ./dev.sh run    build and run the engine (zero configuration: dev PKI + echo backend)
#   ./dev.sh test   run the whole test suite (unit + integration, both io backends)
#   ./dev.sh prereqs  only install the prerequisites
# Either installs the build prerequisites first when they are missing.
set -euo pipefail
cd "$(dirname "$0")"

apt_install() {
    local missing=()
    for pkg in "$@"; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "dev.sh: installing ${missing[*]}" >&2
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}

case "${1:-}" in
    prereqs)
        apt_install cmake libclang-dev curl openssl
        ;;
    run)
        apt_install cmake libclang-dev
        shift
        cargo build --release -p certgate
        exec ./target/release/certgate "$@"
        ;;
    test)
        # curl and openssl are driven by the integration tests.
        apt_install cmake libclang-dev curl openssl
        cargo test --workspace
        # A few seconds of real load against the engine (loadgen smoke).
        cargo build -p certgate -p certgate-loadgen
        bash loadgen/scripts/smoke-certgate.sh
        ;;
    *)
        echo "usage: ./dev.sh run | test | prereqs" >&2
        exit 2
        ;;
esac

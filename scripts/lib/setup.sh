# Sourced by the scripts: what each needs installed, installed only when missing, so every
# script runs on a fresh machine (Debian's archive, PyPI and crates.io reachable).

# The one feature set of the test build: the Rust suite, the GPU suite (wgpu on Mesa's
# software Vulkan; CUDA, compiled in, refusing to start without a GPU), the Python suites and
# the scripts that convert weights all use the binaries of this one dev build, so its
# dependencies are compiled once.
KILN_TEST_FEATURES=kiln-server/wgpu,kiln-server/cuda,kiln-server/train,kiln-zoo/fault-injection

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# need_packages PACKAGE...: installs the Debian packages that are not installed yet.
need_packages() {
    local missing=() package
    for package in "$@"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" \
            || missing+=("$package")
    done
    [ ${#missing[@]} -eq 0 ] && return
    echo "installing Debian packages: ${missing[*]}" >&2
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
}

# need_venv DIR PYTHON CHECK_IMPORTS REQUIREMENT...: a virtual environment in DIR made from
# PYTHON, with the requirements installed unless `import CHECK_IMPORTS` already works there.
need_venv() {
    local dir=$1 python=$2 imports=$3
    shift 3
    if [ -x "$dir/bin/python" ] && "$dir/bin/python" -c "import $imports" 2>/dev/null; then
        return
    fi
    echo "installing into $dir: $*" >&2
    "$python" -m venv "$dir"
    "$dir/bin/pip" install --quiet --disable-pip-version-check "$@"
}

# The test build's binaries (target/debug/kiln), for the suites that drive a real process.
# Built as `cargo test` builds them — features resolved with the dev-dependencies — so after
# the Rust suite's build this is a no-op: `cargo build --bins` resolves features without the
# dev-dependencies and would compile half the graph a second time.
need_test_binaries() {
    cargo test --no-run --quiet --workspace --features "$KILN_TEST_FEATURES"
}

need_nextest() {
    cargo nextest --version >/dev/null 2>&1 || cargo install --locked cargo-nextest
}

# The Python environments of the test suites, by name (used by the suites and by
# scripts/test.sh, which prepares them while the Rust build runs).
need_interop_venv() {
    need_venv target/interop-venv python3 'tritonclient.http, tritonclient.grpc, openai, selenium, pytest, numpy' \
        'tritonclient[http,grpc]==2.73.0' 'openai==3.60.*' 'selenium==4.51.*' 'pytest==8.*' numpy
}
need_torch_venv() {
    need_venv target/torch-venv python3 'torch, torchvision, skimage, safetensors, onnx, onnxruntime, pytest' \
        'torch==2.15.*' 'torchvision==0.29.*' 'safetensors==0.8.*' 'scikit-image==0.26.*' \
        'pytest==9.*' 'onnxruntime==1.32.*' numpy onnx
}
need_deploy_venv() {
    need_venv target/deploy-venv python3 'kserve, kubernetes_validate, yaml, pytest' \
        'pytest==9.*' 'kubernetes-validate==1.37.*' 'kserve==0.21.0' pyyaml
}

# The Debian packages the test suites read or run: Fashion-MNIST and the SWORD Bibles (data),
# Prometheus (the scrape test), Mesa's software Vulkan (the GPU suite), docker-compose and
# debootstrap (the deployment suite).
need_test_packages() {
    need_packages dataset-fashion-mnist sword-text-web sword-text-sparv prometheus \
        mesa-vulkan-drivers libvulkan1 docker-compose debootstrap chromium chromium-driver
}

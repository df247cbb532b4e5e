# Kiln in a container: a Rust build stage, then a slim Debian runtime with the `kiln`
# binary and the bundled models, run as a non-root user.
#
#   docker build -t kiln .
#   docker run --rm -p 8000:8000 -p 8001:8001 kiln
#
# Build arguments:
#   FEATURES          cargo features of kiln-server beyond the default CPU build, e.g.
#                     "wgpu,cuda" (CUDA's driver and NVRTC are loaded at run time)
#   RUNTIME_PACKAGES  Debian packages the runtime needs for them, e.g. "libvulkan1
#                     mesa-vulkan-drivers" for wgpu (NVIDIA hosts bring their own driver)
# GPU backends keep compiled kernels in KILN_KERNEL_CACHE_DIR (/var/cache/kiln): mount a
# volume there so restarted containers skip compiling and autotuning.
#   RUST_IMAGE, RUNTIME_IMAGE  the base images
# A `vendor/` folder in the build context (from `cargo vendor`) is used instead of
# crates.io: scripts/docker-build.sh builds this way on machines without a registry.
ARG RUST_IMAGE=rust:1.95-slim-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

# The runtime, everything but Kiln's binary, which the last stage adds from the build
# stage. `--target runtime` stops here, before the Rust build: `scripts/docker-build.sh
# --binary PATH` adds a binary built outside the image instead.
FROM ${RUNTIME_IMAGE} AS runtime
ARG RUNTIME_PACKAGES=""
RUN if [ -n "$RUNTIME_PACKAGES" ]; then \
        apt-get update && apt-get install -y --no-install-recommends $RUNTIME_PACKAGES \
        && rm -rf /var/lib/apt/lists/*; \
    fi \
    && useradd --system --uid 10001 --user-group --home-dir /srv/kiln --shell /usr/sbin/nologin kiln \
    && mkdir -p /var/cache/kiln && chown kiln:kiln /var/cache/kiln
COPY models /srv/kiln/models
WORKDIR /srv/kiln
USER kiln
# Every `kiln serve` flag has a KILN_* twin (`kiln serve --help`).
ENV KILN_HTTP_ADDR=0.0.0.0:8000 \
    KILN_GRPC_ADDR=0.0.0.0:8001 \
    KILN_MODEL_REPOSITORY=/srv/kiln/models \
    KILN_KERNEL_CACHE_DIR=/var/cache/kiln \
    RUST_LOG=info
EXPOSE 8000 8001
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 CMD ["kiln", "health"]
# SIGTERM drains: in-flight requests are answered before the process exits (up to
# KILN_DRAIN_TIMEOUT_SECS); give `docker stop -t` at least that long.
STOPSIGNAL SIGTERM
ENTRYPOINT ["kiln", "serve"]

FROM ${RUST_IMAGE} AS builder
ARG FEATURES=""
WORKDIR /src
# Dependencies get their own layer: the workspace's manifests over empty crates (and empty
# files for the targets a manifest names), built once, so a change to Kiln's own source
# rebuilds only Kiln.
COPY Cargo.toml Cargo.lock ./
COPY server/Cargo.toml server/
COPY model-zoo/Cargo.toml model-zoo/
COPY kernels/Cargo.toml kernels/
COPY loadtest/Cargo.toml loadtest/
COPY proto/Cargo.toml proto/
COPY onnx-models/Cargo.toml onnx-models/
# The crate Cargo.toml patches in for cubecl-llvm (CUDA without LLVM): resolved in every build.
COPY patches patches/
COPY vendor vendor/
RUN if ls vendor/*/Cargo.toml >/dev/null 2>&1; then \
        mkdir -p .cargo && printf '%s\n' '[source.crates-io]' 'replace-with = "vendored"' \
            '[source.vendored]' 'directory = "vendor"' > .cargo/config.toml; \
    fi \
    && for crate in server model-zoo kernels loadtest proto onnx-models; do \
        mkdir -p "$crate/src" && : > "$crate/src/lib.rs"; \
    done \
    && echo 'fn main() {}' > server/src/main.rs \
    && echo 'fn main() {}' > loadtest/src/main.rs \
    && for crate in server model-zoo kernels loadtest proto onnx-models; do \
        awk -v crate="$crate" '/^\[\[(bench|example|test)\]\]/ { kind = $0; gsub(/[][]/, "", kind); next } \
            kind != "" && /^name *=/ { gsub(/[" ]/, ""); sub(/^name=/, ""); \
                dir = (kind == "bench") ? "benches" : (kind == "example") ? "examples" : "tests"; \
                print crate "/" dir "/" $0 ".rs"; kind = "" }' "$crate/Cargo.toml"; \
    done > /tmp/stubs \
    && while read -r stub; do mkdir -p "$(dirname "$stub")" && echo 'fn main() {}' > "$stub"; done < /tmp/stubs \
    && cargo build --release --locked -p kiln-server --features "$FEATURES" \
    && rm -rf server/src loadtest/src model-zoo/src kernels/src proto/src onnx-models/src $(cat /tmp/stubs) \
        target/release/.fingerprint/kiln-* target/release/deps/*kiln_* target/release/kiln*

COPY . .
RUN cargo build --release --locked -p kiln-server --features "$FEATURES" \
    && strip target/release/kiln

FROM runtime
COPY --from=builder /src/target/release/kiln /usr/local/bin/kiln

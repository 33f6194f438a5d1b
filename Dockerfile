# syntax=docker/dockerfile:1
#
# The http-wasm gateway as a container image:
#
#   docker build -t http-wasm:0.1.0 .
#   docker run --rm --read-only -p 8080:8080 -p 9090:9090 http-wasm:0.1.0 \
#       --listen 0.0.0.0:8080 --admin 0.0.0.0:9090
#
# (without --upstream, --filter or --dapr that is the demo, with its built-in
# filters in front of an echo backend). See docs/gateway.md, "Deploying".

# Build: the toolchain and wasm targets of rust-toolchain.toml, the release
# binary, and the example filters' modules written out of it. Debian 12
# (bookworm), as the final image, so the binary needs no newer glibc than
# the one it runs with.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# The example filters' modules are committed in cli/modules and embedded.
RUN rustup target add wasm32-unknown-unknown wasm32-wasip1 \
 && cargo build --release --locked -p http-wasm-cli \
 && install -D target/release/http-wasm /out/usr/local/bin/http-wasm \
 && /out/usr/local/bin/http-wasm build-examples --out /out/filters

# Run: glibc and libgcc only (distroless "cc"), as the image's non-root user
# (65532). Nothing is written to the root filesystem, so it may be mounted
# read-only; --cache-dir, when used, wants a writable volume of its own.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/ /
USER 65532:65532
EXPOSE 8080 9090
ENTRYPOINT ["http-wasm", "serve"]
CMD ["--listen", "0.0.0.0:8080", "--admin", "0.0.0.0:9090"]

# The Sluice image: `sluice` built with cargo, run as a non-root user from a slim Debian.
#
#   docker build -t sluice:0.1.0 .
#
# The Helm chart (helm/sluice) runs this image with a read-only root filesystem as uid 10001;
# the data dir (/var/lib/sluice) and /tmp are volumes there.

# ---- build -----------------------------------------------------------------------------
# Debian 12 (bookworm) in both stages, so the libraries the binary is linked against at
# build time are the ones the runtime stage installs.
FROM rust:1.95-bookworm AS build
# rdkafka builds librdkafka from source and links it statically (its default build, no
# cmake): a C toolchain, make and pkg-config, plus the headers of what it links
# dynamically: OpenSSL (TLS, SASL/SCRAM) and zlib. protoc is not needed (protox).
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential pkg-config libssl-dev zlib1g-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p sluice \
 && install -m 0755 target/release/sluice /usr/local/bin/sluice

# ---- run -------------------------------------------------------------------------------
FROM debian:bookworm-slim
# What the binary links at run time (scripts/helm-test.sh checks this list against `ldd`),
# and the CA certificates for Kafka over TLS.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libc6 libgcc-s1 libssl3 zlib1g \
 && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 sluice \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/sluice --no-create-home \
      --shell /usr/sbin/nologin sluice \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/sluice
COPY --from=build /usr/local/bin/sluice /usr/local/bin/sluice
# Numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001
WORKDIR /var/lib/sluice
# One port: the admin API, Raft between nodes, and gRPC health.
EXPOSE 7070
ENTRYPOINT ["sluice"]
CMD ["--help"]

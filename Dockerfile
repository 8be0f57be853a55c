# The stash-rs image: the operator, its job commands, and what the data path runs
# (mariadb-dump / mysql clients and restic). Build: docker build -t ghcr.io/stash-rs/stash:v0.1.0 .
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# Without the `embedded` feature: no fake API server, providers or s3s in the image.
RUN cargo build --release -p stash-operator --bin stash --no-default-features

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends mariadb-client restic ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/stash /usr/local/bin/stash
USER 65534:65534
ENTRYPOINT ["/usr/local/bin/stash"]

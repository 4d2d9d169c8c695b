#!/usr/bin/env bash
# build-weed.sh builds the SeaweedFS server that the S3 integration tests
# start on loopback (package testweed), once per version, and prints the
# binary's path.
#
# SeaweedFS pulls hundreds of modules, so it is built in a throwaway module
# of its own (never in gemproxy's go.mod). The binary is cached between runs
# under ${GEMPROXY_WEED_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gemproxy},
# keyed by the version below: a warm run only prints the path. A cold build
# compiles for about 4.5 minutes on 2 cores.
set -euo pipefail

WEED_VERSION=v0.0.0-20261109003541-7506e5f91cd6
cache_dir="${GEMPROXY_WEED_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gemproxy}"
bin="$cache_dir/weed-$WEED_VERSION"

if [ -x "$bin" ]; then
	echo "$bin"
	exit 0
fi

go_cmd="${GO:-go}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$cache_dir"

cat >"$work/go.mod" <<MOD
module weedwrap

go $("$go_cmd" env GOVERSION | sed 's/^go//')

replace github.com/tyler-smith/go-bip39 => github.com/cosmos/go-bip39 v1.0.0
MOD
cat >"$work/tools.go" <<'GO'
//go:build tools

package tools

import _ "github.com/seaweedfs/seaweedfs/weed"
GO

(
	cd "$work"
	export GOFLAGS=-mod=mod GOWORK=off
	"$go_cmd" get "github.com/seaweedfs/seaweedfs@$WEED_VERSION" >&2
	"$go_cmd" build -trimpath -o "$work/weed" github.com/seaweedfs/seaweedfs/weed >&2
)
# Rename into place so that a build killed midway never leaves a binary
# that looks complete.
mv "$work/weed" "$bin.tmp.$$"
mv "$bin.tmp.$$" "$bin"
echo "$bin"

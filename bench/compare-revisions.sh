#!/usr/bin/env bash
# Two revisions side by side, in one run: a clean release build of the
# functions (and hello-lambda) from scratch for each, their binary and zip
# sizes, then cold starts beside each revision's own hello-lambda.
#
#   bench/compare-revisions.sh BEFORE AFTER      # e.g. HEAD~1 HEAD
#
# Each revision is checked out in a temporary worktree with its own empty
# CARGO_TARGET_DIR. The two builds run at the same time, one job each
# (`-j1`), so they share the machine's load alike. Zips are the native
# (x86_64) release binaries deflated at level 9, as `bootstrap` in a zip,
# which is how `make package` ships them (there for arm64). The cold starts
# run through this tree's deployer-bench (`BENCH_COMPARE`), which measures
# the functions of both revisions one after another; the rest of its
# figures (handler time, upload latency) are the after revision's. Needs
# `make setup`.
set -euo pipefail

before=${1:?usage: bench/compare-revisions.sh BEFORE AFTER}
after=${2:?usage: bench/compare-revisions.sh BEFORE AFTER}
root=$(git rev-parse --show-toplevel)
work=${COMPARE_DIR:-$(mktemp -d /tmp/deployer-compare.XXXXXX)}
functions=(s3-trigger trigger-build ci-dispatch site-build site-builder gates)
# gates on its own, as `make package` builds it (Cargo unifies features
# across the packages of one build; cfn-guard's would reach every function).
packages=(-p s3-trigger -p trigger-build -p ci-dispatch -p site-build -p hello-lambda)

checkout() {
  local label=$1 rev=$2
  git -C "$root" worktree add --detach --force "$work/$label" "$rev" >/dev/null
}

build() {
  local label=$1
  local start end
  start=$(date +%s.%N)
  (cd "$work/$label" && CARGO_TARGET_DIR="$work/$label/target" \
    cargo build --release --locked -j1 "${packages[@]}" >"$work/$label.build.log" 2>&1 &&
    if [ -d lambdas/gates ]; then
      cargo build --release --locked -j1 -p gates >>"$work/$label.build.log" 2>&1
    fi)
  end=$(date +%s.%N)
  python3 -c "print($end - $start)" >"$work/$label.build.secs"
}

checkout before "$before"
checkout after "$after"
echo "building $before and $after from scratch, at the same time, one job each…"
build before & pid_before=$!
build after & pid_after=$!
wait $pid_before || { tail -20 "$work/before.build.log"; exit 1; }
wait $pid_after || { tail -20 "$work/after.build.log"; exit 1; }

printf '\nclean `cargo build --release -j1` of the functions and hello-lambda\n'
printf '%-8s %-14s %10s %8s\n' build revision seconds crates
for label in before after; do
  rev=$(git -C "$work/$label" rev-parse --short HEAD)
  crates=$(grep -c '^ *Compiling ' "$work/$label.build.log" || true)
  printf '%-8s %-14s %10.0f %8s\n' "$label" "$rev" "$(cat "$work/$label.build.secs")" "$crates"
done

printf '\nrelease binaries (x86_64), and zipped as bootstrap (deflate -9)\n'
printf '%-14s %14s %14s %14s %14s %8s\n' function "before bytes" "after bytes" "before zip" "after zip" "zip Δ"
for f in hello-lambda "${functions[@]}"; do
  sizes=()
  for label in before after; do
    bin="$work/$label/target/release/$f"
    sizes+=("$(stat -c %s "$bin")")
    sizes+=("$(python3 - "$bin" <<'EOF'
import io, sys, zipfile
buf = io.BytesIO()
with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
    z.write(sys.argv[1], "bootstrap")
print(len(buf.getvalue()))
EOF
)")
  done
  delta=$(python3 -c "print(f'{(${sizes[3]} - ${sizes[1]}) * 100 / ${sizes[1]}:+.1f}')")
  printf '%-14s %14s %14s %14s %14s %7s%%\n' "$f" "${sizes[0]}" "${sizes[2]}" "${sizes[1]}" "${sizes[3]}" "$delta"
done

printf '\ncold starts (deployer-bench functions)\n'
(cd "$root" && cargo build --quiet -p deployer-bench &&
  CARGO_TARGET_DIR="$work/after/target" \
    BENCH_COMPARE="before=$work/before/target/release,after=$work/after/target/release" \
    target/debug/deployer-bench functions)

git -C "$root" worktree remove --force "$work/before"
git -C "$root" worktree remove --force "$work/after"

#!/bin/bash
# SPDX-License-Identifier: BSD-3-Clause
#
# Runs QEMU's own image-tool test suite (tests/qemu-iotests of a QEMU 7.2
# source tree) twice per format: once with qemu-img, once with strata-img
# in its place, every other program (qemu-io, qemu-nbd,
# qemu-storage-daemon, qemu-system-x86_64) being QEMU's.  Prints both pass
# lists and the tests that pass with qemu-img but not with strata-img.
#
# It fetches nothing: get the source with `apt-get source qemu` (a deb-src
# entry for the running suite is needed) and pass its top directory.
#
#   tests/peer/qemu-iotests.sh [options] QEMU_SOURCE_DIR [TEST...]
#     --formats "qcow2 raw"   formats to run (default: qcow2 raw)
#     --group auto            iotests group (default: auto; ignored when
#                             tests are named)
#     --build DIR             strata build directory (default: build)
#     --only strata|qemu      run one side (the other side's list is then
#                             taken from a previous run's results, if any)
#     --out DIR               where results go (default: iotests-results)
#     -j N                    parallel tests (default: 1)
#
# Exit status: 0 when every test that passes with qemu-img passes with
# strata-img, 1 otherwise, 2 on a usage error.
set -u

formats="qcow2 raw"
group=auto
build=build
only=""
out=iotests-results
jobs=1
usage() { sed -n '/^#   tests/,/^# Exit/p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

while [ $# -gt 0 ]; do
    case "$1" in
    --formats) formats=$2; shift 2 ;;
    --group) group=$2; shift 2 ;;
    --build) build=$2; shift 2 ;;
    --only) only=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    -j) jobs=$2; shift 2 ;;
    -h|--help) usage ;;
    -*) echo "qemu-iotests.sh: unknown option '$1'" >&2; usage ;;
    *) break ;;
    esac
done
[ $# -ge 1 ] || usage
src=$(cd "$1" && pwd) || exit 2
shift
tests=("$@")
[ -x "$src/tests/qemu-iotests/check" ] || {
    echo "qemu-iotests.sh: '$src' has no tests/qemu-iotests/check" >&2; exit 2; }
strata_img=$(cd "$build" 2>/dev/null && pwd)/src/strata-img/strata-img
[ -x "$strata_img" ] || {
    echo "qemu-iotests.sh: no strata-img in '$build' (build first)" >&2; exit 2; }
for p in qemu-img qemu-io qemu-nbd qemu-storage-daemon qemu-system-x86_64; do
    command -v $p >/dev/null || {
        echo "qemu-iotests.sh: '$p' is needed (qemu-utils, qemu-system-x86)" >&2
        exit 2; }
done
mkdir -p "$out" && out=$(cd "$out" && pwd)

# The suite writes into its own directory and finds QEMU's python modules
# at ../../python, so each run gets a private copy of both.
work=$(mktemp -d /tmp/strata-iotests.XXXXXX)
cleanup() {
    # A test that dies can leave a FUSE export mounted in its scratch
    # directory; unmount only what lies inside our own work directory.
    grep -o " $work/[^ ]*" /proc/mounts 2>/dev/null | sort -r |
        while read -r m; do umount "$m" 2>/dev/null || umount -l "$m"; done
    rm -rf "$work"
}
trap cleanup EXIT

run_side() {  # side fmt
    local side=$1 fmt=$2 tree=$work/$1-$2 img
    mkdir -p "$tree/tests" "$tree/bin"
    cp -a "$src/tests/qemu-iotests" "$tree/tests/"
    cp -a "$src/python" "$tree/"
    if [ "$side" = strata ]; then img=$strata_img; else img=$(command -v qemu-img); fi
    # The tool prints its argv[0]'s name in messages, as qemu-img does, so
    # the link's name keeps the expected output comparable.
    ln -s "$img" "$tree/bin/qemu-img"
    local g=(-g "$group")
    [ ${#tests[@]} -gt 0 ] && g=("${tests[@]}")
    (cd "$tree/tests/qemu-iotests" &&
     QEMU_IMG_PROG=$tree/bin/qemu-img \
     QEMU_IO_PROG=$(command -v qemu-io) \
     QEMU_NBD_PROG=$(command -v qemu-nbd) \
     QSD_PROG=$(command -v qemu-storage-daemon) \
     QEMU_PROG=$(command -v qemu-system-x86_64) \
     TEST_DIR=$tree/scratch SOCK_DIR=$tree/sock \
     ./check -tap -j "$jobs" "-$fmt" "${g[@]}" ) > "$out/$side-$fmt.tap" 2>&1
    grep -E '^ok ' "$out/$side-$fmt.tap" | grep -v '# SKIP' |
        awk '{print $3}' | sort > "$out/$side-$fmt.pass"
    grep -E '^not ok ' "$out/$side-$fmt.tap" | awk '{print $4}' | sort \
        > "$out/$side-$fmt.fail"
    # Keep the failing tests' diffs for reading.
    mkdir -p "$out/$side-$fmt.bad"
    cp "$tree"/tests/qemu-iotests/*.out.bad "$out/$side-$fmt.bad/" 2>/dev/null
    find "$tree/scratch" -name '*.out.bad' -exec cp {} "$out/$side-$fmt.bad/" \; 2>/dev/null
}

status=0
for fmt in $formats; do
    for side in qemu strata; do
        [ -n "$only" ] && [ "$only" != "$side" ] && continue
        echo "== running the suite for -$fmt with $side's image tool" >&2
        run_side "$side" "$fmt"
    done
    q=$out/qemu-$fmt.pass s=$out/strata-$fmt.pass
    [ -f "$q" ] && [ -f "$s" ] || continue
    echo "== -$fmt: qemu-img passes $(wc -l < "$q"), strata-img passes $(wc -l < "$s")"
    echo "qemu-img:   $(tr '\n' ' ' < "$q")"
    echo "strata-img: $(tr '\n' ' ' < "$s")"
    missing=$(comm -23 "$q" "$s" | tr '\n' ' ')
    extra=$(comm -13 "$q" "$s" | tr '\n' ' ')
    echo "pass with qemu-img only:   ${missing:-none}"
    echo "pass with strata-img only: ${extra:-none}"
    [ -n "$missing" ] && status=1
done
exit $status

#!/usr/bin/env bash
# `make image-test`: build the Dockerfile on a locally made stand-in base and run it with the smoke profile.
#
#   1. the container engine: Debian's podman with the runc runtime (installed with apt when missing and root);
#      settings in tools/image/containers.conf, through $CONTAINERS_CONF (the host's own are left alone);
#   2. the stand-in base (no registry is reachable): Debian 12 made with mmdebstrap from the host's apt sources,
#      plus the CPU torch of constraints/cpu.txt; reused while its recipe is unchanged;
#   3. the image, built with cached layers; pip inside the build reads the host's index settings and CA bundle
#      from read-only mounts (tools/image/pip_mounts.py), none of which enters the image;
#   4. a run with the smoke profile and a mounted /out, stopped with `podman stop` during the notebooks: it must
#      end within STOP_LIMIT_S seconds, by its own signal handling (not the engine's SIGKILL);
#   5. a second run on the same /out: it must reuse the trained models, finish with exit code 0, and leave the
#      book (index and every notebook page), the result rows and the evaluation table in /out.
#
# Every failure is one line starting with "image-test: FAIL"; containers it started are removed on exit.
# Environment: IMAGE_TEST_OUT (default build/image-test/out), IMAGE_TAG (default localhost/perfmamba:ci),
# BUILD_TIMEOUT_S, RUN_TIMEOUT_S, STOP_LIMIT_S, KEEP_STANDIN_OS_TAR.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

BUILD_TIMEOUT_S=${BUILD_TIMEOUT_S:-1500}
RUN_TIMEOUT_S=${RUN_TIMEOUT_S:-900}
STOP_LIMIT_S=${STOP_LIMIT_S:-20}
IMAGE_TAG=${IMAGE_TAG:-localhost/perfmamba:ci}
OUT=${IMAGE_TEST_OUT:-$ROOT/build/image-test/out}
LOGS=$(dirname "$OUT")
HOST_PY=${HOST_PY:-python3}
export CONTAINERS_CONF=$ROOT/tools/image/containers.conf

T0=$SECONDS
say() { printf 'image-test: [%4ds] %s\n' $((SECONDS - T0)) "$*"; }
fail() { printf 'image-test: FAIL: %s\n' "$*" >&2; exit 1; }

STARTED=()
cleanup() {
  local c
  for c in "${STARTED[@]}"; do podman rm -f -t 0 "$c" >/dev/null 2>&1 || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- 1. the engine -----------------------------------------------------------------------------------------
mkdir -p "$LOGS"
need=()
for tool in podman runc mmdebstrap; do command -v "$tool" >/dev/null 2>&1 || need+=("$tool"); done
if ((${#need[@]})); then
  [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
    || fail "missing ${need[*]}; install Debian's podman, runc and mmdebstrap (needs root and apt)"
  say "installing podman, runc, mmdebstrap with apt"
  export DEBIAN_FRONTEND=noninteractive
  { apt-get update -qq -o DPkg::Lock::Timeout=600 \
      && apt-get install -y -qq -o DPkg::Lock::Timeout=600 --no-install-recommends podman runc mmdebstrap uidmap
  } >"$LOGS/apt.log" 2>&1 || fail "apt-get could not install podman/runc/mmdebstrap (see $LOGS/apt.log)"
fi
podman info >/dev/null 2>&1 || fail "podman does not work here: $(podman info 2>&1 | tail -1)"

mapfile -t PIP_MOUNTS < <("$HOST_PY" tools/image/pip_mounts.py)
say "pip settings mounted read-only into the build: ${PIP_MOUNTS[*]:-none}"

# --- 2. the stand-in base ----------------------------------------------------------------------------------
TORCH_PIN=$(grep -E '^torch==' constraints/cpu.txt) || fail "constraints/cpu.txt pins no torch"
DEBIAN_PACKAGES=python3,python3-venv,python3-pip,ca-certificates
OS_RECIPE=$(echo "bookworm minbase $DEBIAN_PACKAGES" | sha256sum | cut -c1-12)
RECIPE=$(cat tools/image/standin.Containerfile <(echo "$OS_RECIPE $TORCH_PIN") | sha256sum | cut -c1-12)
STANDIN_OS=localhost/perfmamba-standin-os:$OS_RECIPE
STANDIN=localhost/perfmamba-standin:$RECIPE
if podman image exists "$STANDIN"; then
  say "stand-in base $STANDIN reused"
else
  if ! podman image exists "$STANDIN_OS"; then
    sources=()
    for f in /etc/apt/sources.list.d/debian.sources /etc/apt/sources.list; do
      [ -s "$f" ] && grep -qE '^(deb |URIs:)' "$f" && { sources=("$f"); break; }
    done
    say "making Debian 12 with mmdebstrap (${sources[*]:-default mirror})"
    tar=$LOGS/standin-os.tar
    timeout 900 mmdebstrap --variant=minbase --include="$DEBIAN_PACKAGES" bookworm "$tar" "${sources[@]}" >"$LOGS/mmdebstrap.log" 2>&1 \
      || fail "mmdebstrap failed (see $LOGS/mmdebstrap.log)"
    podman import --change 'CMD ["/bin/bash"]' "$tar" "$STANDIN_OS" >"$LOGS/import.log" 2>&1 \
      || fail "podman import of the stand-in OS failed"
    [ -n "${KEEP_STANDIN_OS_TAR:-}" ] || rm -f "$tar"
  fi
  say "adding $TORCH_PIN (CPU) to the stand-in base"
  timeout 900 podman build --network=host --pull=never --format docker "${PIP_MOUNTS[@]}" \
      --build-arg OS="$STANDIN_OS" --build-arg TORCH="$TORCH_PIN" -t "$STANDIN" \
      -f tools/image/standin.Containerfile tools/image >"$LOGS/standin-build.log" 2>&1 \
    || fail "stand-in base build failed (see $LOGS/standin-build.log)"
fi

# --- 3. the image ------------------------------------------------------------------------------------------
say "building $IMAGE_TAG on $STANDIN (log: $LOGS/build.log)"
t=$SECONDS
timeout "$BUILD_TIMEOUT_S" podman build --network=host --pull=never --format docker --layers "${PIP_MOUNTS[@]}" \
    --build-arg BASE="$STANDIN" -t "$IMAGE_TAG" . >"$LOGS/build.log" 2>&1 \
  || fail "image build failed or passed ${BUILD_TIMEOUT_S}s: $(grep -E 'error|Error|ERROR' "$LOGS/build.log" | tail -1)"
say "image built in $((SECONDS - t)) s; $(podman image inspect --format '{{.Size}}' "$IMAGE_TAG" | awk '{printf "%.2f GB", $1/1e9}')"
# earlier builds' images that nothing uses any more (the layers of the image just built stay, as build cache)
podman image prune -f >/dev/null 2>&1 || true

# --- 4. a run stopped during the notebooks -----------------------------------------------------------------
rm -rf "$OUT" && mkdir -p "$OUT"
name=perfmamba-image-test-$$
run() {  # run NAME: start the container detached with the smoke profile (the image's default command otherwise)
  STARTED+=("$1")
  podman run -d --name "$1" --network=none -v "$OUT:/out" "$IMAGE_TAG" \
      perfmamba reproduce --profile smoke --out /out >/dev/null
}
wait_exit() {  # wait_exit NAME SECONDS → the container's exit code, or fail
  timeout "$2" podman wait "$1" 2>/dev/null || { podman logs "$1" >"$LOGS/$1.log" 2>&1 || true
    fail "$1 did not finish within $2 s (log: $LOGS/$1.log)"; }
}
run "$name-1"
say "run 1 started; stopping it once it executes the notebooks"
deadline=$((SECONDS + RUN_TIMEOUT_S))
until podman logs "$name-1" 2>&1 | grep -q '^\[4/5\]'; do
  [ "$(podman inspect -f '{{.State.Running}}' "$name-1")" = true ] \
    || { podman logs "$name-1" >"$LOGS/run1.log" 2>&1; fail "run 1 ended before the notebooks (log: $LOGS/run1.log)"; }
  ((SECONDS < deadline)) || fail "run 1 did not reach the notebooks within ${RUN_TIMEOUT_S}s"
  sleep 2
done
sleep 5
t=$SECONDS
podman stop -t 60 "$name-1" >/dev/null
stop_s=$((SECONDS - t))
code=$(podman inspect -f '{{.State.ExitCode}}' "$name-1")
podman logs "$name-1" >"$LOGS/run1.log" 2>&1
say "podman stop took ${stop_s} s (exit code $code)"
((stop_s <= STOP_LIMIT_S)) || fail "podman stop took ${stop_s} s (limit ${STOP_LIMIT_S} s): SIGTERM is not handled"
[ "$code" != 137 ] || fail "run 1 was killed (exit 137), it did not end on SIGTERM"
[ ! -e "$OUT/book" ] || fail "a stopped run left $OUT/book"
trained=("$OUT"/artifacts/models/*/model.safetensors)
[ -e "${trained[0]}" ] || fail "run 1 left no trained model in /out"
before=$(stat -c '%n %Y' "${trained[@]}")

# --- 5. a second run resumes and finishes ------------------------------------------------------------------
t=$SECONDS
run "$name-2"
code=$(wait_exit "$name-2" "$RUN_TIMEOUT_S")
podman logs "$name-2" >"$LOGS/run2.log" 2>&1
say "run 2 finished in $((SECONDS - t)) s with exit code $code (log: $LOGS/run2.log)"
[ "$code" = 0 ] || fail "run 2 exited with $code: $(grep -v '^\s*$' "$LOGS/run2.log" | tail -1)"
[ "$(stat -c '%n %Y' "${trained[@]}")" = "$before" ] && ! grep -q 'train mamba' "$LOGS/run2.log" \
  || fail "run 2 trained the models again instead of resuming them from /out"
"$HOST_PY" tools/image/check_out.py "$OUT" "$LOGS/run2.log" || fail "the image's /out is incomplete (above)"
say "passed in $((SECONDS - T0)) s"

#!/usr/bin/env bash
# One-command install of mmevo and the OpenMMLab stack into ./.venv (see ../README.md).
#
#   bash tools/install.sh            # idempotent: a second run takes seconds
#
# torch 2.14.1 + torchvision 0.29.1, mmengine 0.10.7, mmcv 2.1.0 built from source with its ops
# against the installed torch (C++20), mmdet 3.3.0, mmsegmentation 1.2.2, mmpretrain 1.2.0 and mmevo
# (editable). Built wheels are cached in a wheelhouse named after the torch version
# (MMEVO_WHEELHOUSE, default ~/.cache/mmevo/wheelhouse-torch<ver>-<python>), so a torch change
# triggers a rebuild instead of reusing a wheel that would fail with `undefined symbol`.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3.11}"
TORCH_VERSION="2.14.1"
TORCHVISION_VERSION="0.29.1"
MMCV_VERSION="2.1.0"
VENV="$ROOT/.venv"
PY="$VENV/bin/python"
PYTAG="$("$PYTHON" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')"
WHEELHOUSE_BASE="${MMEVO_WHEELHOUSE:-$HOME/.cache/mmevo/wheelhouse-torch${TORCH_VERSION}-${PYTAG}}"

log() { printf '[mmevo install] %s\n' "$*"; }
die() { printf '[mmevo install] ERROR: %s\n' "$*" >&2; exit 1; }

# A stamp of everything that decides the environment: unchanged inputs -> nothing to do.
STAMP_INPUT="$(cat "$0" requirements/*.txt setup.py tools/misc/mmcv_build_plan.py \
  | sha256sum | cut -d' ' -f1)"
STAMP="$VENV/.mmevo-install-stamp"
if [[ -x "$PY" && -f "$STAMP" && "$(cat "$STAMP")" == "$STAMP_INPUT" ]] \
    && "$PY" -c 'import mmevo, mmcv.ops, mmdet, mmseg, mmpretrain' >/dev/null 2>&1; then
  log "environment up to date ($VENV)"
  exit 0
fi

[[ -x "$PY" ]] || { log "creating $VENV"; "$PYTHON" -m venv "$VENV"; }
PIP=("$PY" -m pip --disable-pip-version-check)

log "installing torch $TORCH_VERSION / torchvision $TORCHVISION_VERSION and build tools"
"${PIP[@]}" install -q "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION" \
    "setuptools>=77.0.3,<81" wheel ninja
"${PIP[@]}" install -q "mmengine==0.10.7" addict packaging Pillow pyyaml yapf opencv-python

# CPU ops, or CPU + CUDA ops where a CUDA toolkit, a CUDA torch and a GPU are present
# (tools/misc/mmcv_build_plan.py; MMEVO_MMCV_CUDA=0/1 overrides). CUDA wheels live apart.
read -r MMCV_KIND MMCV_SUFFIX MMCV_REASON < <("$PY" tools/misc/mmcv_build_plan.py) \
  || die "could not decide which mmcv ops to build (tools/misc/mmcv_build_plan.py)"
[[ "$MMCV_SUFFIX" == "-" ]] && MMCV_SUFFIX=""
WHEELHOUSE="$WHEELHOUSE_BASE$MMCV_SUFFIX"
log "mmcv $MMCV_VERSION: $MMCV_REASON"
mkdir -p "$WHEELHOUSE"
MMCV_WHEEL="$(ls "$WHEELHOUSE"/mmcv-"$MMCV_VERSION"-*.whl 2>/dev/null | head -n1 || true)"
if [[ -z "$MMCV_WHEEL" ]]; then
  BUILD_LOG="$WHEELHOUSE/build-mmcv-$MMCV_VERSION.log"
  BUILD_DIR="$(mktemp -d)"
  # mmcv's setup.py builds CUDA kernels whenever torch sees a GPU: hide it for a CPU build
  BUILD_ENV=(FORCE_CUDA=0 CUDA_VISIBLE_DEVICES=)
  [[ "$MMCV_KIND" == "cuda" ]] && BUILD_ENV=(FORCE_CUDA=1)
  log "building mmcv $MMCV_VERSION with $MMCV_KIND ops against torch $TORCH_VERSION (CPU ops ~11 min on 2 cores; CUDA ops much longer); log: $BUILD_LOG"
  {
    "${PIP[@]}" download --no-deps --no-binary :all: --no-build-isolation \
        -d "$BUILD_DIR" "mmcv==$MMCV_VERSION" &&
    tar -xzf "$BUILD_DIR"/mmcv-"$MMCV_VERSION".tar.gz -C "$BUILD_DIR" &&
    # torch 2.14's headers require C++20; mmcv 2.1.0 asks for C++17.
    sed -i "s/'-std=c++17'/'-std=c++20'/" "$BUILD_DIR/mmcv-$MMCV_VERSION/setup.py" &&
    grep -q -- "-std=c++20" "$BUILD_DIR/mmcv-$MMCV_VERSION/setup.py" &&
    (cd "$BUILD_DIR/mmcv-$MMCV_VERSION" && env "${BUILD_ENV[@]}" MMCV_WITH_OPS=1 \
        MAX_JOBS="${MAX_JOBS:-2}" "${PIP[@]}" wheel --no-deps --no-build-isolation \
        -w "$WHEELHOUSE" .)
  } >"$BUILD_LOG" 2>&1 || {
    tail -n 25 "$BUILD_LOG" >&2
    die "building mmcv $MMCV_VERSION failed (see the lines above); full log: $BUILD_LOG"
  }
  rm -rf "$BUILD_DIR"
  MMCV_WHEEL="$(ls "$WHEELHOUSE"/mmcv-"$MMCV_VERSION"-*.whl | head -n1)"
fi
log "installing $(basename "$MMCV_WHEEL")"
"${PIP[@]}" install -q --no-deps --force-reinstall "$MMCV_WHEEL"

log "installing mmdet, mmsegmentation, mmpretrain and mmevo"
"${PIP[@]}" install -q "mmdet==3.3.0" "mmsegmentation==1.2.2" "mmpretrain==1.2.0" \
    "setuptools>=77.0.3,<81" \
    -r requirements/runtime.txt -r requirements/optional.txt -r requirements/tests.txt
# openmim (for `mim train`) without its dataset-download dependency opendatalab -> openxlab, which
# pins setuptools~=60.2 (no longer installable beside torch 2.14) and other old packages.
"${PIP[@]}" install -q --no-deps "openmim==0.3.9"
"${PIP[@]}" install -q click colorama model-index pandas requests rich tabulate
"${PIP[@]}" install -q --no-deps --no-build-isolation -e .

"$PY" - <<'PYEOF' || die "the installed stack does not import; see the traceback above"
import torch, torchvision, mmengine, mmcv, mmcv.ops, mmdet, mmseg, mmpretrain, mmevo
from mmcv.ops import get_compiling_cuda_version, modulated_deform_conv2d  # noqa: F401
cuda = get_compiling_cuda_version()
ops = 'CPU ops' if cuda in ('', 'not available') else f'CPU + CUDA {cuda} ops'
print(f'[mmevo install] torch {torch.__version__}, torchvision {torchvision.__version__}, '
      f'mmengine {mmengine.__version__}, mmcv {mmcv.__version__} ({ops}), mmdet {mmdet.__version__}, '
      f'mmseg {mmseg.__version__}, mmpretrain {mmpretrain.__version__}, mmevo {mmevo.__version__}')
PYEOF
echo "$STAMP_INPUT" >"$STAMP"
log "done: activate with 'source .venv/bin/activate'"

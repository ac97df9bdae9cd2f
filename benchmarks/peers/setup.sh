#!/usr/bin/env bash
# Create one virtual environment per peer library, under benchmarks/.venvs/<peer>.
#
#   bash benchmarks/peers/setup.sh                 # every peer
#   bash benchmarks/peers/setup.sh pydvl           # only pyDVL
#
# The peers pin versions of numpy, pandas, scikit-learn and torch that conflict with ours, so
# each gets its own environment; benchmarks/run.py calls their runner scripts with that
# environment's python. This script always builds a fresh environment; a finished one has a
# file `.ready` listing what was installed, and run.py calls this script only for a peer whose
# `.ready` is missing.
#
# torch: OpenDataVal imports torch. It pins torch~=2.1.0 and torchvision~=0.16.0, whose PyPI
# wheels for Linux are CUDA builds (several GB). We install the CPU wheel of torch 2.13.0 first
# (the version our own environment uses), then OpenDataVal without letting pip resolve its
# torch pins (--no-deps), then its other dependencies with their own pins. torchvision is left
# out: PyPI's torchvision wheels are CUDA builds whose operators do not load next to a CPU
# torch, and OpenDataVal needs it only for its image data sets, so run_opendataval.py puts
# empty stand-in modules in its place. pip then reports the torch/torchvision pins as
# "incompatible"; that is expected.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENVS="$(dirname "$HERE")/.venvs"
PYTHON="${PYTHON:-python3}"
TORCH_VERSION="${TORCH_VERSION:-2.13.0}"
PYDVL_SPEC="${PYDVL_SPEC:-pydvl==0.10.*}"
OPENDATAVAL_SPEC="${OPENDATAVAL_SPEC:-opendataval==1.3.*}"
# The peers get the scikit-learn of our own environment (if it exists), so that the decision
# trees of Data-OOB and the LogisticRegression of LOO are the same code for everyone.
OURS_PYTHON="$(dirname "$(dirname "$HERE")")/.venv/bin/python"
SKLEARN_SPEC="scikit-learn"
if [ -x "$OURS_PYTHON" ]; then
    SKLEARN_SPEC="scikit-learn==$("$OURS_PYTHON" -c 'import sklearn; print(sklearn.__version__)')"
fi

new_venv() {
    local dir="$VENVS/$1"
    rm -rf "$dir"
    "$PYTHON" -m venv "$dir"
    "$dir/bin/python" -m pip install --quiet --upgrade pip
}

setup_pydvl() {
    # pyDVL's valuation methods (pydvl.valuation) need no torch: a plain install resolves.
    local dir="$VENVS/pydvl"
    new_venv pydvl
    "$dir/bin/pip" install --quiet "$PYDVL_SPEC" "$SKLEARN_SPEC"
}

setup_opendataval() {
    local dir="$VENVS/opendataval"
    new_venv opendataval
    "$dir/bin/pip" install --quiet "torch==$TORCH_VERSION"
    "$dir/bin/pip" install --quiet --no-deps "$OPENDATAVAL_SPEC"
    # OpenDataVal 1.3.0's declared dependencies, minus torch and torchvision (see above).
    "$dir/bin/pip" install --quiet "torch==$TORCH_VERSION" \
        "numpy>=1.22.4,<1.26" "pandas>=1.5.3,<2" "scikit-learn~=1.3" "$SKLEARN_SPEC" "scipy~=1.11" \
        "matplotlib~=3.8" "tqdm~=4.64.1" "transformers~=4.35" "geomloss~=0.2.6" \
        "pykeops~=2.1.2" "pandera~=0.15.1" "requests~=2.31" "typer~=0.9.0" "torcheval~=0.0.7"
}

mark_ready() {
    local dir="$VENVS/$1"
    "$dir/bin/python" -m pip freeze > "$dir/.ready"
}

peers=("$@")
if [ ${#peers[@]} -eq 0 ]; then
    peers=(pydvl opendataval)
fi
mkdir -p "$VENVS"
for peer in "${peers[@]}"; do
    case "$peer" in
        pydvl | opendataval) ;;
        *) echo "setup.sh: unknown peer '$peer' (use pydvl or opendataval)" >&2; exit 2 ;;
    esac
    echo "setting up $peer in $VENVS/$peer ..."
    "setup_$peer"
    mark_ready "$peer"
    echo "$peer ready: $(grep -i -E "^($peer)==" "$VENVS/$peer/.ready")"
done

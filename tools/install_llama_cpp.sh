#!/usr/bin/env bash
# Install llama-cpp-python from a wheel built once for this CPU and cached.
# PyPI ships llama-cpp-python as source only. A default build uses -march=native,
# which on some virtual machines emits instructions the VM does not execute
# ("Illegal instruction"). So we switch native detection off and turn on exactly
# the x86 extensions that /proc/cpuinfo lists, then keep the wheel in a cache
# keyed by those flags: later runs reuse it instead of rebuilding (6-8 minutes on 2 cores).
set -euo pipefail
PY=${PYTHON:-python}
VERSION=${LLAMA_CPP_VERSION:-0.3.36}
CACHE=${LLMCOURSE_WHEELS:-${LLMCOURSE_HOME:-$HOME/.cache/llmcourse}/wheels}

flags=""
if [ "$(uname -m)" = "x86_64" ] && [ -r /proc/cpuinfo ]; then
  cpu=" $(grep -m1 '^flags' /proc/cpuinfo | cut -d: -f2) "
  has() { case "$cpu" in *" $1 "*) return 0;; *) return 1;; esac; }
  flags="-DGGML_NATIVE=OFF"
  has avx && flags="$flags -DGGML_AVX=ON"
  has avx2 && flags="$flags -DGGML_AVX2=ON"
  has fma && flags="$flags -DGGML_FMA=ON"
  has f16c && flags="$flags -DGGML_F16C=ON"
  has avx_vnni && flags="$flags -DGGML_AVX_VNNI=ON"
  has avx512f && flags="$flags -DGGML_AVX512=ON"
  has avx512_vnni && flags="$flags -DGGML_AVX512_VNNI=ON"
  has avx512_bf16 && flags="$flags -DGGML_AVX512_BF16=ON"
  has avx512vbmi && flags="$flags -DGGML_AVX512_VBMI=ON"
fi
key=$(printf '%s %s' "$VERSION" "$flags" | sha256sum | cut -c1-12)
dir="$CACHE/llama-cpp-python-$VERSION-$key"

if "$PY" - "$VERSION" "$dir" <<'PYEOF'
import sys, pathlib
from importlib.metadata import version, PackageNotFoundError, distribution
want, d = sys.argv[1], pathlib.Path(sys.argv[2])
try: have = version("llama-cpp-python")
except PackageNotFoundError: sys.exit(1)
# installed from our cached wheel? (pip records the wheel's origin in direct_url.json)
origin = distribution("llama-cpp-python").read_text("direct_url.json") or ""
sys.exit(0 if have == want and str(d) in origin else 1)
PYEOF
then
  echo "llama-cpp-python $VERSION already installed from $dir"; exit 0
fi

if ! ls "$dir"/llama_cpp_python-*.whl >/dev/null 2>&1; then
  echo "Building llama-cpp-python $VERSION once for this CPU (about 6-8 minutes on 2 cores)"
  echo "CMAKE_ARGS=$flags"
  mkdir -p "$dir.tmp"
  CMAKE_ARGS="$flags" "$PY" -m pip wheel --no-deps --no-cache-dir "llama-cpp-python==$VERSION" -w "$dir.tmp"
  rm -rf "$dir"; mv "$dir.tmp" "$dir"
fi
"$PY" -m pip install --force-reinstall --no-deps "$dir"/llama_cpp_python-*.whl

#!/usr/bin/env bash
# Build llama.cpp's own `llama-server` (the benchmark's peer) and `llama-perplexity` (the
# quality reference of model conversion) from the llama.cpp sources vendored in the
# llama-cpp-python sdist (the only llama.cpp source the package index offers).
#
#   bench/build_llama_server.sh [PIP] [OUT]    (about 4-9 minutes on two cores)
#
# ggml's native build (-DGGML_NATIVE=ON) dies with SIGILL in its AMX kernel on VMs that list
# AMX but fault on the tile instructions, so the CPU features are named from /proc/cpuinfo
# instead, AMX always off.
set -euo pipefail
PIP=${1:-python3 -m pip}
OUT=${2:-bench/.peer}
mkdir -p "$OUT/src"
OUT=$(cd "$OUT" && pwd)
if [ ! -x "$OUT/llama-server" ] || [ ! -x "$OUT/llama-perplexity" ]; then
    ls "$OUT"/src/llama_cpp_python-*.tar.gz >/dev/null 2>&1 ||
        $PIP download --quiet --no-deps --no-binary :all: llama-cpp-python -d "$OUT/src"
    [ -d "$(ls -d "$OUT"/src/llama_cpp_python-*/ 2>/dev/null | head -1)" ] ||
        tar -xzf "$OUT"/src/llama_cpp_python-*.tar.gz -C "$OUT/src"
    cd "$OUT"/src/llama_cpp_python-*/vendor/llama.cpp
    flag() { grep -q -w "$1" /proc/cpuinfo && echo "-D$2=ON" || echo "-D$2=OFF"; }
    cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release \
        -DLLAMA_BUILD_SERVER=ON -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DBUILD_SHARED_LIBS=OFF \
        -DGGML_NATIVE=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF \
        "$(flag avx GGML_AVX)" "$(flag avx2 GGML_AVX2)" "$(flag fma GGML_FMA)" \
        "$(flag f16c GGML_F16C)" "$(flag avx512f GGML_AVX512)" \
        "$(flag avx512_vnni GGML_AVX512_VNNI)" "$(flag avx512_bf16 GGML_AVX512_BF16)" \
        "$(flag avx_vnni GGML_AVX_VNNI)" > "$OUT/cmake.log"
    cmake --build build --target llama-server llama-perplexity -j2 > "$OUT/build.log"
    cp build/bin/llama-server build/bin/llama-perplexity "$OUT/"
fi
"$OUT/llama-server" --version 2>&1 | head -2

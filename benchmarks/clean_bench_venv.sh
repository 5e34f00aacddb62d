#!/usr/bin/env bash
# A separate venv for datatrove 0.10.1: it pins trafilatura 1.11, which clashes with ours (trafilatura 2).
# spacy provides the blank English tokenizer its Gopher/C4/FineWeb filters use (no model download).
# Usage: benchmarks/clean_bench_venv.sh [.bench-venv]
set -euo pipefail
VENV="${1:-.bench-venv}"
python3.11 -m venv "$VENV"
"$VENV/bin/pip" install -q "datatrove[processing]==0.10.1" spacy
"$VENV/bin/python" -c "import datatrove.pipeline.filters, spacy; print('datatrove venv ready at $VENV')"

#!/usr/bin/env bash
# A real package's own tests, plain and under `execscope run`: outcomes, spans joined to the CPG,
# cfg-violations and radon agreement. See realworld.py for usage; `--list` shows the presets.
#   tests/realworld/realworld.sh attrs --level branches
exec python3 "$(dirname "$0")/realworld.py" "$@"

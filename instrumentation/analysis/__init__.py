"""Static analysis: the code property graph of a module, without running it.

Owns: :mod:`.cfg` (control flow graphs over node IDs), :mod:`.cdg` (control dependence),
:mod:`.dataflow` (SSA: definitions, uses, reaching definitions, phi nodes), :mod:`.calls` (static
call edges), :mod:`.metrics` (per-function facts), :mod:`.cpg` (every CPG row of a module) and
:mod:`.cfg_check` (observed transitions checked against a CFG).

May import: :mod:`..nodes` and the standard library. Never :mod:`..capture` or :mod:`..export`:
analysing code never records it.
"""

"""Parse and node IDs: one parse per module gives every instrumentable construct a stable node ID.

Owns: :mod:`.node_ids` (the contract, the record types, ``code_version_of``), :mod:`.node_ids_ast`
(the fast stdlib-``ast`` naming every recording process uses) and :mod:`.node_ids_cst` (the libcst
reference definition the fast one is tested against).

May import: the standard library and libcst only. Every other wing imports this one; it imports none.
"""

"""The Debug Adapter Protocol server over recordings (``execscope dap``): framing (``protocol``), the
replay runtime that keeps the position (``runtime``), and the session translating requests
(``session``). State comes from ``execscope.queries`` (the cinema and the breakpoint matcher)."""

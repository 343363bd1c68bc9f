"""The rewrite: rewritten modules served at import time, with their node rows.

Owns: :mod:`.rewriter` (inserts runtime calls into a module's ``ast``, keeping every location),
:mod:`.import_hook` (the ``sys.meta_path`` finder and loader, the rewrite cache) and
:mod:`.main_script` (a script run as ``__main__`` with its own code rewritten).

May import: :mod:`..nodes`, the constants of :mod:`..capture.runtime` (levels) and the spool's atomic
file write. Rewritten code imports nothing: it finds ``execscope.instrumentation.capture.runtime``
as ``_execscope_rt`` in ``builtins`` (published there when the runtime is imported).
"""

"""Golden before/after rewrites: one behaviour per test, exact expected source (ast.unparse form)."""

from __future__ import annotations

import textwrap

from tests.conftest import rewritten_text


def expect(text: str) -> str:
    return textwrap.dedent(text).strip()


WRAP_HEAD = "_execscope_rt = _execscope_rt"
GATE_HEAD = "_execscope_gate = _execscope_rt.GATE"


FUNC = '''
def f(a, *b, c=1, **d):
    """doc"""
    return a
'''


def test_plain_function_rewritten_in_the_no_variable_form() -> None:
    # the frame is needed only to return: no variable of ours in the function (CPython clears every
    # local at every call, which would cost even unrecorded calls); the *_current hooks find the frame
    got = rewritten_text(FUNC, "functions")
    version = _version(FUNC)
    assert got == expect(f'''
        {WRAP_HEAD}
        {GATE_HEAD}

        def f(a, *b, c=1, **d):
            """doc"""
            if not _execscope_gate:
                return a
            _execscope_rt.enter_current(('m:f', 'm.f', 'm.py', 2, '{version}', ('a', 'b', 'c', 'd')), (a, b, c, d))
            try:
                return _execscope_rt.ret_current(a)
            except BaseException:
                _execscope_rt.fail_current()
                raise
            finally:
                _execscope_rt.leave_current()
    ''')


def test_function_needing_its_frame_wrapped_with_enter_fail_leave_and_return_value() -> None:
    source = '''
def f(a, b):
    """doc"""
    return a or b
'''
    import ast

    from execscope.instrumentation.rewrite.rewriter import rewrite_source

    tree, _n, _s = rewrite_source(source, "m", "m.py", 2)
    got = ast.unparse(next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)))
    version = _version(source)
    assert got == (expect(f'''
        def f(a, b):
            """doc"""
            if not _execscope_gate:
                return a or b
            _execscope_frame = _execscope_rt.enter(('m:f', 'm.f', 'm.py', 2, '{version}', ('a', 'b')), (a, b))
            try:
                return _execscope_rt.ret(_execscope_frame, _execscope_rt.arm(_execscope_frame, 'm:f:bool_op#0.op0', a) or _execscope_rt.arm(_execscope_frame, 'm:f:bool_op#0.op1', b))
            except BaseException as _execscope_exc:
                _execscope_rt.fail(_execscope_frame, _execscope_exc)
                raise
            finally:
                _execscope_rt.leave(_execscope_frame)
    '''))


def test_async_functions_keep_their_frame_variable() -> None:
    got = rewritten_text("async def f(a):\n    return a\n", "functions")
    assert "return _execscope_rt.ret(_execscope_frame, a)" in got and "_current" not in got


def _version(source: str) -> str:
    from execscope.instrumentation.nodes.node_ids import code_version_of

    return code_version_of(textwrap.dedent(source))


def body_of(source: str, level: str, name: str = "f") -> str:
    """The rewritten body of function ``name`` inside its enter/try/fail/leave wrapper."""
    import ast

    from execscope.instrumentation.rewrite.rewriter import rewrite_source

    tree, _n, stats = rewrite_source(textwrap.dedent(source), "m", "m.py", {"functions": 1, "branches": 2,
                                                                           "statements": 3}[level])
    assert stats.unmatched == []
    func = next(n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
                and n.name == name)
    wrapper = func.body[-1]
    assert isinstance(wrapper, ast.Try) and ast.unparse(wrapper.handlers[0].body[0]) in (
        "_execscope_rt.fail(_execscope_frame, _execscope_exc)", "_execscope_rt.fail_current()")
    return "\n".join(ast.unparse(stmt) for stmt in wrapper.body)


MODULE = '''"""Module doc."""
from __future__ import annotations
X = 1
'''


def test_future_import_and_docstring_stay_first() -> None:
    got = rewritten_text(MODULE, "statements").splitlines()
    assert got[:5] == ['"""Module doc."""', "from __future__ import annotations", WRAP_HEAD, GATE_HEAD,
                       f"_execscope_frame = _execscope_rt.enter_module(('m:<module>', 'm', 'm.py', 1, "
                       f"'{_version(MODULE)}', ()))"]
    assert got[5:8] == ["try:", "    _execscope_rt.line(_execscope_frame, 'm:<module>:assign#0', 3)", "    X = 1"]


def test_branches_if_elif_else_arms() -> None:
    got = body_of('''
        def f(a):
            if a:
                x = 1
            elif a is None:
                x = 2
    ''', "branches")
    assert got == expect('''
        if a:
            _execscope_rt.branch(_execscope_frame, 'm:f:if#0.true')
            x = 1
        else:
            _execscope_rt.branch(_execscope_frame, 'm:f:if#0.false')
            if a is None:
                _execscope_rt.branch(_execscope_frame, 'm:f:if#1.true')
                x = 2
            else:
                _execscope_rt.branch(_execscope_frame, 'm:f:if#1.false')
    ''')


def test_branches_loops_try_match_and_short_circuit() -> None:
    got = body_of('''
        def f(xs):
            for x in xs:
                pass
            else:
                pass
            while xs:
                break
            try:
                pass
            except E:
                pass
            else:
                pass
            match xs:
                case 1:
                    pass
            return xs and x or None
    ''', "branches")
    assert got == expect('''
        for x in xs:
            _execscope_rt.branch(_execscope_frame, 'm:f:for#0.body')
            pass
        else:
            _execscope_rt.branch(_execscope_frame, 'm:f:for#0.else')
            pass
        while xs:
            _execscope_rt.branch(_execscope_frame, 'm:f:while#0.body')
            break
        try:
            pass
        except E:
            _execscope_rt.caught(_execscope_frame, 'm:f:except#0', ((10, 8, 10, 12, 'm:f:pass#2'),))
            pass
        else:
            _execscope_rt.branch(_execscope_frame, 'm:f:try#0.else')
            pass
        match xs:
            case 1:
                _execscope_rt.branch(_execscope_frame, 'm:f:match#0.case0')
                pass
        return _execscope_rt.ret(_execscope_frame, _execscope_rt.arm(_execscope_frame, 'm:f:bool_op#0.op0', _execscope_rt.arm(_execscope_frame, 'm:f:bool_op#1.op0', xs) and _execscope_rt.arm(_execscope_frame, 'm:f:bool_op#1.op1', x)) or _execscope_rt.arm(_execscope_frame, 'm:f:bool_op#0.op1', None))
    ''')


def test_handlers_record_what_they_caught_with_where_the_try_body_can_raise() -> None:
    # ``caught`` replaces the handler's ``branch``: the exception first (when raised in this frame),
    # then the arm. Its constant: every statement of the try body, nested blocks included, as
    # (line, col, end line, end col, node ID); a nested definition is one statement (its decorators
    # included), its body runs in another frame; a statement's else/finally/handlers count (an inner
    # handler's raise reaches the outer one), the outer try's own else does not.
    got = body_of('''
        def f(xs):
            try:
                for x in xs:
                    if x: y = 1 // x
                try:
                    g()
                except:
                    raise
                finally:
                    h()
                @deco
                def inner():
                    return 1 // 0
            except (ValueError, ZeroDivisionError) as e:
                pass
            else:
                k()
    ''', "branches")
    points = ("((4, 8, 5, 28, 'm:f:for#0'), (5, 12, 5, 28, 'm:f:if#0'), (5, 18, 5, 28, 'm:f:assign#0'), "
              "(6, 8, 11, 15, 'm:f:try#1'), (7, 12, 7, 15, 'm:f:expr#0'), (9, 12, 9, 17, 'm:f:raise#0'), "
              "(11, 12, 11, 15, 'm:f:expr#1'), (12, 9, 14, 25, 'm:f.<locals>.inner'))")
    assert f"_execscope_rt.caught(_execscope_frame, 'm:f:except#1', {points})" in got
    assert "_execscope_rt.caught(_execscope_frame, 'm:f:except#0', ((7, 12, 7, 15, 'm:f:expr#0'),))" in got
    assert "branch(_execscope_frame, 'm:f:except" not in got
    star = body_of('''
        def f():
            try:
                g()
            except* TypeError:
                pass
    ''', "statements")
    assert star == expect('''
        _execscope_rt.line(_execscope_frame, 'm:f:try#0', 3)
        try:
            _execscope_rt.line(_execscope_frame, 'm:f:expr#0', 4)
            g()
        except* TypeError:
            _execscope_rt.caught(_execscope_frame, 'm:f:except#0', ((4, 8, 4, 11, 'm:f:expr#0'),))
            _execscope_rt.line(_execscope_frame, 'm:f:pass#0', 6)
            pass
    ''')
    from execscope.instrumentation.capture import runtime
    from execscope.instrumentation.rewrite import rewriter

    assert runtime._RT_NAME == rewriter.RT  # how the runtime tells a recorded call's code in a traceback
    assert "caught" not in rewritten_text('''
        def f():
            try:
                g()
            except E:
                pass
    ''', "functions")


def test_statements_lines_and_assigned_values() -> None:
    got = body_of('''
        def f(o):
            a, b = o
            o.attr = a
            o[0] += 1
            with o as w:
                pass
    ''', "statements")
    assert got == expect('''
        _execscope_rt.line(_execscope_frame, 'm:f:assign#0', 3)
        a, b = o
        _execscope_rt.assign(_execscope_frame, 'm:f:target#0', 'a', a)
        _execscope_rt.assign(_execscope_frame, 'm:f:target#1', 'b', b)
        _execscope_rt.line(_execscope_frame, 'm:f:assign#1', 4)
        o.attr = _execscope_rt.value(_execscope_frame, 'm:f:target#2', 'o.attr', a)
        _execscope_rt.line(_execscope_frame, 'm:f:aug_assign#0', 5)
        o[0] += 1
        _execscope_rt.line(_execscope_frame, 'm:f:with#0', 6)
        with o as w:
            _execscope_rt.assign(_execscope_frame, 'm:f:target#4', 'w', w)
            _execscope_rt.line(_execscope_frame, 'm:f:pass#0', 7)
            pass
    ''')


def test_generator_yields_hand_back_context() -> None:
    got = body_of('''
        def g(it):
            got = yield 1
            yield from it
    ''', "functions", "g")
    assert got == expect('''
        got = _execscope_rt.resumed(_execscope_frame, (yield _execscope_rt.suspend(_execscope_frame, 1)))
        _execscope_rt.resumed(_execscope_frame, (yield from _execscope_rt.suspend(_execscope_frame, it)))
    ''')


def test_lambdas_and_comprehensions_are_left_alone() -> None:
    got = body_of('''
        def f(xs):
            return [x for x in xs if x and 1], (lambda v: v if v else 0)
    ''', "branches")
    assert got == expect('''
        return _execscope_rt.ret_current(([x for x in xs if x and 1], lambda v: v if v else 0))
    ''')


def test_what_lambdas_and_comprehensions_run_in_the_enclosing_scope_is_probed() -> None:
    # a lambda's defaults and a comprehension's first iterable run in f's frame, before the new scope
    # exists: their arms are f's (the CFG has them there), while the insides stay alone
    got = body_of('''
        def f(xs, k):
            return [x for x in (xs or [k]) if x or k], (lambda v=(k or 0): v or 1)
    ''', "branches")
    assert got == expect('''
        return _execscope_rt.ret(_execscope_frame, ([x for x in _execscope_rt.arm(_execscope_frame, 'm:f:bool_op#0.op0', xs) or _execscope_rt.arm(_execscope_frame, 'm:f:bool_op#0.op1', [k]) if x or k], lambda v=_execscope_rt.arm(_execscope_frame, 'm:f:bool_op#2.op0', k) or _execscope_rt.arm(_execscope_frame, 'm:f:bool_op#2.op1', 0): v or 1))
    ''')


def test_annotations_are_never_probed() -> None:
    # not evaluated in a function body, text under `from __future__ import annotations`, deferred on
    # 3.14: a probe there would be a stray call naming a frame that may be gone (the CFG has no arms there)
    import ast

    from execscope.instrumentation.rewrite.rewriter import rewrite_source

    source = textwrap.dedent('''
        from __future__ import annotations
        def f(k: int or None = None) -> bool or None:
            z: k or int = 1
            return z
        y: int if k else str = 2
    ''')
    tree, _n, stats = rewrite_source(source, "m", "m.py", 3)
    assert stats.unmatched == []
    got = ast.unparse(tree)
    assert "def f(k: int or None=None) -> bool or None:" in got
    assert "z: k or int = 1" in got and "y: int if k else str = 2" in got
    assert "arm(" not in got


def test_original_positions_survive() -> None:
    import ast

    from execscope.instrumentation.rewrite.rewriter import rewrite_source

    source = "def f(a):\n    x = a\n\n    if x:\n        return x\n"
    tree, _n, _s = rewrite_source(source, "m", "m.py", 3)
    lines = {(type(n).__name__, n.lineno) for n in ast.walk(tree) if isinstance(n, (ast.Return, ast.If))
             and "_execscope_gate" not in ast.unparse(getattr(n, "test", n))  # not the gate's test ...
             and not (isinstance(n, ast.Return) and n.value is None)}  # ... nor the return after the original
    assert lines == {("Return", 5), ("If", 4)}
    code = compile(tree, "m.py", "exec")
    f_code = next(c for c in code.co_consts if hasattr(c, "co_name") and c.co_name == "f")
    assert f_code.co_firstlineno == 1
    assert {line for _s, _e, line in f_code.co_lines() if line} <= {1, 2, 4, 5}


def test_unrecorded_calls_run_the_original_body_with_declarations_hoisted() -> None:
    got = rewritten_text('''
        def f(a):
            if a:
                global X
                X = a
            for i in range(a):
                yield i
    ''', "functions")
    head = got.split("    _execscope_frame = ")[0]
    assert head == expect(f'''
        {WRAP_HEAD}
        {GATE_HEAD}

        def f(a):
            global X
            if not _execscope_gate:
                if a:
                    pass
                    X = a
                for i in range(a):
                    yield i
                return
    ''') + "\n"
    assert "global X" not in got.split("if not _execscope_gate:")[1]


NESTED = """
def outer(a):
    def inner():
        return a
    return inner
"""


def test_functions_with_nested_definitions_hand_no_frame_to_their_hooks() -> None:
    got = rewritten_text(NESTED, "functions")
    lines = got.splitlines()
    assert lines[4] == ("    _execscope_frame = _execscope_rt.enter(('m:outer', 'm.outer', 'm.py', 2, "
                        f"'{_version(NESTED)}', ('a',)), (a,)) if _execscope_gate else _execscope_rt.NO_FRAME")
    assert got.count("if not _execscope_gate:") == 1  # inner is a leaf: it runs as written when unrecorded

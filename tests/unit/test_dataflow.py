"""SSA data flow: one scope rule per test (reaching definitions, phi nodes, unbinding, cross-scope)."""

from __future__ import annotations

import textwrap

from execscope.instrumentation.analysis.cpg import build_module_cpg


def flow(source: str, kinds: tuple[str, ...] = ("REACHING_DEF",), full: bool = False) -> list[str]:
    cpg = build_module_cpg(textwrap.dedent(source), "m")

    def name(n: str) -> str:
        return n if full else (n.split(":", 2)[-1] if n.count(":") >= 2 else n.split(":", 1)[-1])

    out = []
    for src, dst, kind, label, props in cpg.edges:
        if kind in kinds:
            via = props.get("via", "local")
            out.append(f"{kind[0]} {name(src)} -> {name(dst)} {label}" + ("" if via == "local" else f" ({via})"))
    return sorted(out)


def test_phi_at_the_join_of_two_definitions() -> None:
    assert flow('''
        def f(c):
            if c:
                x = 1
            else:
                x = 2
            return x
    ''', ("REACHING_DEF", "PHI")) == [
        "P target#0 -> return#0.phi(x) x", "P target#1 -> return#0.phi(x) x",
        "R f -> if#0 c",  # parameters are defined by the function itself, at entry
        "R target#0 -> return#0 x", "R target#1 -> return#0 x",
    ]


def test_loop_carried_definition_meets_the_initial_one_at_the_body_arm() -> None:
    got = flow('''
        def f(xs):
            t = 0
            for x in xs:
                t = t + x
            return t
    ''', ("REACHING_DEF", "PHI"))
    assert "P target#0 -> for#0.body.phi(t) t" in got and "P target#2 -> for#0.body.phi(t) t" in got
    assert "R target#1 -> assign#1 x" in got  # the loop target is defined at the body arm
    assert "R target#0 -> assign#1 t" in got and "R target#2 -> assign#1 t" in got


def test_closure_reads_the_enclosing_function_definition() -> None:
    assert flow('''
        def f():
            x = 1
            def g():
                return x
            return g
    ''') == ["R f.<locals>.g -> return#0 g", "R target#0 -> return#0 x (closure)"]


def test_class_body_binds_class_attributes_not_module_names() -> None:
    assert flow('''
        x = 1
        class K:
            x = 2
            y = x
        z = x
    ''', full=True) == [
        "R m:<module>:target#0 -> m:<module>:assign#1 x",
        "R m:K:target#0 -> m:K:assign#1 x",
    ]


def test_comprehension_uses_outer_names_but_binds_its_own_target() -> None:
    assert flow('''
        def f(xs):
            n = 1
            return [x + n for x in xs]
    ''') == ["R f -> return#0 xs", "R target#0 -> return#0 n"]


def test_augmented_assignment_attribute_and_subscript_stores() -> None:
    assert flow('''
        def f(o, d):
            o.a = 1
            d[0] = 2
            n = 0
            n += o.a + d[0]
            return n
    ''') == [
        "R f -> assign#0 o", "R f -> assign#1 d", "R f -> aug_assign#0 d", "R f -> aug_assign#0 o",
        "R target#0 -> aug_assign#0 o.a",  # the attribute store reaches the attribute load
        "R target#2 -> aug_assign#0 n",    # += reads the old value ...
        "R target#3 -> return#0 n",        # ... and defines a new one
    ]


def test_star_unpacking_defines_every_name() -> None:
    assert flow('''
        def f(t):
            a, *b = t
            return a, b
    ''') == ["R f -> assign#0 t", "R target#0 -> return#0 a", "R target#1 -> return#0 b"]


def test_except_as_name_is_unbound_after_the_handler() -> None:
    assert flow('''
        def f():
            e = 0
            try:
                g()
            except E as e:
                h(e)
            return e
    ''') == ["R except#0 -> expr#1 e", "R target#0 -> return#0 e"]


def test_del_kills_the_definition() -> None:
    assert flow('''
        def f():
            x = 1
            del x
            x = 2
            return x
    ''') == ["R target#1 -> return#0 x"]


def test_global_declaration_makes_definitions_module_wide() -> None:
    assert flow('''
        x = 1
        def f():
            global x
            x = 2
        def g():
            return x
    ''', full=True) == [
        "R m:<module>:target#0 -> m:g:return#0 x (global)",
        "R m:f:target#0 -> m:g:return#0 x (global)",
    ]


def test_nonlocal_declaration_makes_definitions_the_enclosing_function_s() -> None:
    got = flow('''
        def f():
            x = 1
            def g():
                nonlocal x
                x = 2
            def h():
                return x
            return g, h
    ''', full=True)
    assert "R m:f.<locals>.g:target#0 -> m:f.<locals>.h:return#0 x (closure)" in got
    assert "R m:f:target#0 -> m:f.<locals>.h:return#0 x (closure)" in got


def test_walrus_and_with_as_and_match_capture_define() -> None:
    got = flow('''
        def f(v):
            if (n := len(v)) > 1:
                pass
            with open(v) as fh:
                pass
            match v:
                case [a, *rest]:
                    return n, fh, a, rest
    ''')
    assert "R target#0 -> return#0 n" in got
    assert "R target#1 -> return#0 fh" in got
    assert "R match#0.case0 -> return#0 a" in got and "R match#0.case0 -> return#0 rest" in got

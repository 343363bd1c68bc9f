"""What the root-cause walk reads from a statement: the names it reads outside the calls the recording
shows (those are followed through the callee's parameters), attribute/subscript chains, and calls."""

from __future__ import annotations

import ast

from execscope.queries.why import _header, _normal, _reads


def reads(source: str, recorded: tuple[str, ...] = ()) -> tuple[list[str], list[str], list[str]]:
    stmt = ast.parse(source).body[0]
    r = _reads(_header(stmt), set(recorded))
    return r.names, r.chains, [ast.unparse(c.func) for c in r.calls]


def test_names_read_outside_recorded_calls() -> None:
    assert reads("total = total - total * discount") == (["total", "discount"], [], [])
    assert reads("total = apply_loyalty(total, order['customer'])", ("apply_loyalty",)) == (
        [], [], ["apply_loyalty"])
    # an unrecorded call (a builtin, a method) is part of the expression: its arguments (and the object
    # a method is called on) are read; the name of the function is code, not data
    assert reads("return round(total * (1 - rate), 2)") == (["total", "rate"], [], ["round"])
    assert reads("rate = COUPONS.get(coupon, 0.0)") == (["COUPONS", "coupon"], [], ["COUPONS.get"])


def test_aug_assign_reads_its_target_and_assign_does_not_read_the_object_written() -> None:
    assert reads("discount += 0.40") == (["discount"], [], [])
    assert reads("settings.batch_size = size") == (["size"], [], [])
    assert reads("values[i] = value / 100") == (["value"], [], [])
    assert reads("self.total += x") == (["self", "x"], ["self.total"], [])


def test_chains_and_headers_of_compound_statements() -> None:
    assert reads("count = len(items) // settings.batch_size") == (["items", "settings"], ["settings.batch_size"],
                                                                  ["len"])
    assert reads("if customer.get('vip') and discount:\n    x = secret") == (["customer", "discount"], [],
                                                                             ["customer.get"])
    assert reads('x = order["lines"][0].price') == (["order"], ["order['lines'][0].price", "order['lines'][0]",
                                                                "order['lines']"], [])
    assert reads("for item, quantity in lines:\n    total += item") == (["lines"], [], [])
    assert reads("while n > limit:\n    n -= 1") == (["n", "limit"], [], [])


def test_comprehension_variables_are_not_reads() -> None:
    assert reads("total = sum(p * q for p, q in pairs)") == (["pairs"], [], ["sum"])


def test_target_text_is_compared_as_python_writes_it() -> None:
    assert _normal('LIMITS["a"]') == _normal("LIMITS['a']") == "LIMITS['a']"
    assert _normal("self . x") == "self.x"

"""A small, safe rule language for signals and filters, evaluated on whole batches.

``zscore < -2.0 and rsi < 30 and cusum_alarm == 0`` is parsed with :mod:`ast` and every node is
checked against an allow-list: names are columns, calls are the functions listed in
``FUNCTIONS``, constants are numbers or booleans. Nothing is ever ``eval``ed; attribute access,
subscripts, lambdas, comprehensions and dunder names are rejected at compile time.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from engine.registry import close_matches, did_you_mean

Columns = Mapping[str, np.ndarray]
Evaluator = Callable[[Columns], np.ndarray]


class RuleError(ValueError):
    """A rule that is not in the language, or names an unknown column or function."""

    def __init__(self, message: str, col: int | None = None):
        self.col = col
        super().__init__(message)


def _abs(x: np.ndarray) -> np.ndarray:
    return np.abs(x)


FUNCTIONS: dict[str, tuple[int, Callable[..., np.ndarray]]] = {
    "abs": (1, _abs),
    "min": (2, np.fmin),
    "max": (2, np.fmax),
    "isnan": (1, lambda x: np.isnan(np.asarray(x, dtype=np.float64))),
}

_COMPARE: dict[type, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    ast.Lt: np.less, ast.LtE: np.less_equal, ast.Gt: np.greater, ast.GtE: np.greater_equal,
    ast.Eq: np.equal, ast.NotEq: np.not_equal,
}
def _divide(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a / b with NaN, never inf, where b is 0 (the kernels' convention)."""
    return np.where(np.asarray(b) == 0, np.nan, np.divide(a, b))


_ARITH: dict[type, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    ast.Add: np.add, ast.Sub: np.subtract, ast.Mult: np.multiply, ast.Div: _divide,
    ast.Mod: np.mod, ast.Pow: np.power,
}
_WHY = {
    ast.Attribute: "attribute access", ast.Subscript: "subscripts", ast.Lambda: "lambdas",
    ast.ListComp: "comprehensions", ast.GeneratorExp: "comprehensions",
    ast.DictComp: "comprehensions", ast.SetComp: "comprehensions", ast.List: "lists",
    ast.Tuple: "tuples", ast.Dict: "mappings", ast.Set: "sets", ast.IfExp: "if-expressions",
    ast.NamedExpr: "assignments", ast.Starred: "starred arguments", ast.JoinedStr: "strings",
    ast.Await: "await", ast.Yield: "yield",
}


@dataclass(frozen=True)
class Rule:
    """A parsed rule: the columns it reads and a vectorised evaluator."""

    text: str
    columns: frozenset[str]
    evaluate: Evaluator

    def mask(self, columns: Columns) -> np.ndarray:
        """Boolean array: where the rule holds (NaN comparisons are false)."""
        result = np.asarray(self.evaluate(columns))
        if result.dtype != np.bool_:
            result = np.nan_to_num(result.astype(np.float64), nan=0.0) != 0
        return result


def parse_rule(text: str, known_columns: set[str] | None = None) -> Rule:
    """Parse and check a rule; unknown columns raise RuleError with close matches."""
    source = " ".join(str(text).split())
    try:
        tree = ast.parse(source, mode="eval")
    except SyntaxError as exc:
        raise RuleError(f"cannot parse rule {source!r}: {exc.msg}", exc.offset) from None
    names: set[str] = set()
    evaluator = _build(tree.body, names)
    if known_columns is not None:
        for name in sorted(names):
            if name not in known_columns:
                hint = did_you_mean(close_matches(name, sorted(known_columns)))
                raise RuleError(f"unknown column {name!r} in rule {source!r}{hint}")
    return Rule(source, frozenset(names), evaluator)


def _reject(node: ast.AST, what: str | None = None) -> RuleError:
    label = what or _WHY.get(type(node), type(node).__name__)
    return RuleError(f"{label} not allowed in a rule", getattr(node, "col_offset", None))


def _build(node: ast.AST, names: set[str]) -> Evaluator:
    if isinstance(node, ast.BoolOp):
        parts = [_build(v, names) for v in node.values]
        combine = np.logical_and if isinstance(node.op, ast.And) else np.logical_or

        def boolop(cols: Columns) -> np.ndarray:
            acc = _truth(parts[0](cols))
            for p in parts[1:]:
                acc = combine(acc, _truth(p(cols)))
            return acc

        return boolop
    if isinstance(node, ast.UnaryOp):
        operand = _build(node.operand, names)
        if isinstance(node.op, ast.Not):
            return lambda cols: np.logical_not(_truth(operand(cols)))
        if isinstance(node.op, ast.USub):
            return lambda cols: np.negative(operand(cols))
        if isinstance(node.op, ast.UAdd):
            return operand
        raise _reject(node, "bitwise operators")
    if isinstance(node, ast.BinOp):
        op = _ARITH.get(type(node.op))
        if op is None:
            raise _reject(node, "bitwise operators")
        left, right = _build(node.left, names), _build(node.right, names)

        def binop(cols: Columns) -> np.ndarray:
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                return op(_num(left(cols)), _num(right(cols)))

        return binop
    if isinstance(node, ast.Compare):
        ops = [_COMPARE.get(type(o)) for o in node.ops]
        if any(o is None for o in ops):
            raise _reject(node, "'in' and 'is'")
        terms = [_build(node.left, names)] + [_build(c, names) for c in node.comparators]

        def compare(cols: Columns) -> np.ndarray:
            values = [_num(t(cols)) for t in terms]
            acc = None
            with np.errstate(invalid="ignore"):
                for i, op in enumerate(ops):
                    assert op is not None
                    step = op(values[i], values[i + 1])
                    acc = step if acc is None else np.logical_and(acc, step)
            return acc

        return compare
    if isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name):
            raise _reject(node.func)
        name = node.func.id
        if name.startswith("__") or name not in FUNCTIONS:
            hint = did_you_mean(close_matches(name, sorted(FUNCTIONS)))
            raise RuleError(f"unknown function {name!r} in a rule{hint}", node.col_offset)
        if node.keywords:
            raise _reject(node, "keyword arguments")
        arity, fn = FUNCTIONS[name]
        if len(node.args) != arity:
            raise RuleError(f"{name}() takes {arity} argument(s), found {len(node.args)}",
                            node.col_offset)
        args = [_build(a, names) for a in node.args]
        return lambda cols: fn(*[_num(a(cols)) for a in args])
    if isinstance(node, ast.Name):
        if node.id.startswith("__"):
            raise _reject(node, "dunder names")
        if node.id in ("True", "False"):
            value = node.id == "True"
            return lambda cols: np.bool_(value)
        names.add(node.id)
        col = node.id
        return lambda cols: cols[col]
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool):
            flag = node.value
            return lambda cols: np.bool_(flag)
        if isinstance(node.value, int | float):
            number = float(node.value)
            return lambda cols: np.float64(number)
        raise _reject(node, "string and other non-numeric constants")
    raise _reject(node)


def _num(x: np.ndarray) -> np.ndarray:
    arr = np.asarray(x)
    if arr.dtype == np.bool_ or arr.dtype.kind in "iu":
        return arr.astype(np.float64)
    return arr


def _truth(x: np.ndarray) -> np.ndarray:
    arr = np.asarray(x)
    if arr.dtype == np.bool_:
        return arr
    return np.nan_to_num(arr.astype(np.float64), nan=0.0) != 0

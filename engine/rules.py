"""A small, safe rule language for signals and filters, evaluated on whole batches.

``zscore < -2.0 and rsi < 30 and cusum_alarm == 0`` is parsed with :mod:`ast` and every node is
checked against an allow-list: names are columns, calls are the functions listed in
``FUNCTIONS`` or ``KEYED_FUNCTIONS``, constants are numbers or booleans. Nothing is ever
``eval``ed; attribute access, subscripts, lambdas, comprehensions and dunder names are rejected
at compile time.

Three functions remember earlier rows of the same key (the job's ``key``, e.g. the symbol):

- ``prev(x, k)``: the value of the expression ``x`` ``k`` rows earlier for the same key, NaN
  until the key has ``k`` earlier rows; ``k`` is a positive integer literal.
- ``crosses_above(a, b)``: ``a > b`` on this row and ``a <= b`` on the key's previous row.
- ``crosses_below(a, b)``: ``a < b`` on this row and ``a >= b`` on the key's previous row.

A rule that uses them (``Rule.is_keyed``) is evaluated with the rows' key ids and a state that
the caller owns and carries from batch to batch, so any split of a stream into batches gives
the same flags::

    rule = parse_rule("crosses_above(ema_fast, ema_slow) and rsi < 70")
    state = rule.new_state()                  # a KernelState: one array per memory slot
    for batch in stream:
        flags = rule.mask(batch_columns, keys=key_ids, state=state)
    saved = state.snapshot(np.arange(state.n_keys))     # {field: (n_keys, k) float64 array}
    fresh = rule.new_state(); fresh.restore(np.arange(state.n_keys), saved)

The state is a :class:`tickflow.engine.state.arrays.KernelState` (first axis = key id, one field
``prev<slot>`` of shape ``(k,)`` per remembered expression, the key's last ``k`` values, oldest
first), so a state backend checkpoints a rule exactly as it checkpoints a kernel step.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from tickflow.engine.registry import close_matches, did_you_mean
from tickflow.engine.state.arrays import KernelState
from tickflow.kernels.base import Field

Columns = Mapping[str, np.ndarray]

MAX_RULE_CHARS = 10_000
MAX_PREV_ROWS = 10_000
MAX_DEPTH = 100


class RuleError(ValueError):
    """A rule that is not in the language, or names an unknown column or function."""

    def __init__(self, message: str, col: int | None = None):
        self.col = col
        super().__init__(message)


FUNCTIONS: dict[str, tuple[int, Callable[..., np.ndarray]]] = {
    "abs": (1, np.abs),
    "min": (2, np.fmin),
    "max": (2, np.fmax),
    "isnan": (1, lambda x: np.isnan(np.asarray(x, dtype=np.float64))),
}
KEYED_FUNCTIONS = {"prev": 2, "crosses_above": 2, "crosses_below": 2}
"""Functions with per-key memory, and their arity."""

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
_BITWISE = (ast.BitAnd, ast.BitOr, ast.BitXor, ast.LShift, ast.RShift, ast.Invert)
_WHY = {
    ast.Attribute: "attribute access", ast.Subscript: "subscripts", ast.Lambda: "lambdas",
    ast.ListComp: "comprehensions", ast.GeneratorExp: "comprehensions",
    ast.DictComp: "comprehensions", ast.SetComp: "comprehensions", ast.List: "lists",
    ast.Tuple: "tuples", ast.Dict: "mappings", ast.Set: "sets", ast.IfExp: "if-expressions",
    ast.NamedExpr: "assignments", ast.Starred: "starred arguments", ast.JoinedStr: "strings",
    ast.Await: "await", ast.Yield: "yield", ast.YieldFrom: "yield",
}


class _Batch:
    """What an evaluator sees: the columns, and for keyed rules the key ids and the state."""

    def __init__(self, columns: Columns, keys: np.ndarray | None, state: KernelState | None):
        self.columns = columns
        self.keys = keys
        self.state = state
        self._groups: tuple[np.ndarray, ...] | None = None

    @property
    def rows(self) -> int:
        assert self.keys is not None
        return int(self.keys.shape[0])

    def groups(self) -> tuple[np.ndarray, ...]:
        """(order, sorted key ids, rank within key, distinct keys, first sorted row, counts).

        Computed once per batch and shared by every memory slot of the rule.
        """
        if self._groups is None:
            assert self.keys is not None
            order = np.argsort(self.keys, kind="stable")
            sorted_keys = self.keys[order]
            n = sorted_keys.shape[0]
            starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]]) \
                if n else np.empty(0, dtype=np.int64)
            counts = np.diff(np.r_[starts, n])
            rank = np.arange(n) - np.repeat(starts, counts)
            self._groups = (order, sorted_keys, rank, sorted_keys[starts], starts, counts)
        return self._groups


Evaluator = Callable[[_Batch], np.ndarray]


@dataclass(frozen=True)
class Rule:
    """A parsed rule: the columns it reads, a vectorised evaluator and its per-key memory."""

    text: str
    columns: frozenset[str]
    evaluate: Evaluator
    memory: tuple[Field, ...] = field(default=())

    @property
    def is_keyed(self) -> bool:
        """Whether the rule remembers earlier rows of each key (prev, crosses_*)."""
        return bool(self.memory)

    def new_state(self) -> KernelState:
        """Fresh per-key memory for this rule (no fields when the rule is not keyed)."""
        return KernelState(list(self.memory))

    def mask(self, columns: Columns, keys: np.ndarray | None = None,
             state: KernelState | None = None) -> np.ndarray:
        """Boolean array: where the rule holds (NaN comparisons are false).

        Args:
            columns: the batch's columns by name (equal-length arrays).
            keys: int64 key id of each row; required when ``is_keyed``.
            state: the rule's memory from ``new_state()``, carried across batches and updated
                in place; required when ``is_keyed``.

        Raises:
            TypeError: a keyed rule called without ``keys`` and ``state``.
        """
        if self.is_keyed:
            if keys is None or state is None:
                msg = (f"rule {self.text!r} remembers earlier rows (prev/crosses_above/"
                       f"crosses_below): call mask(columns, keys=key_ids, "
                       f"state=rule.new_state()) and keep the state across batches")
                raise TypeError(msg)
            keys = np.asarray(keys, dtype=np.int64)
            if keys.shape[0]:
                state.ensure_keys(int(keys.max()) + 1)
        result = np.asarray(self.evaluate(_Batch(columns, keys, state)))
        if result.dtype != np.bool_:
            result = np.nan_to_num(result.astype(np.float64), nan=0.0) != 0
        if self.is_keyed and result.ndim == 0:
            assert keys is not None
            result = np.broadcast_to(result, keys.shape).copy()
        return result


def parse_rule(text: str, known_columns: set[str] | None = None) -> Rule:
    """Parse and check a rule; unknown columns raise RuleError with close matches."""
    source = " ".join(str(text).split())
    if len(source) > MAX_RULE_CHARS:
        raise RuleError(f"a rule may have at most {MAX_RULE_CHARS} characters, "
                        f"found {len(source)}")
    try:
        tree = ast.parse(source, mode="eval")
    except SyntaxError as exc:
        raise RuleError(f"cannot parse rule {source!r}: {exc.msg}", exc.offset) from None
    except (RecursionError, MemoryError):
        raise RuleError(f"rule {source[:60]!r}... is nested too deeply") from None
    if _depth(tree.body) > MAX_DEPTH:  # evaluation recurses as deep as the tree
        raise RuleError(f"rule {source[:60]!r}... is nested too deeply "
                        f"(more than {MAX_DEPTH} levels)")
    builder = _Builder()
    evaluator = builder.build(tree.body)
    if known_columns is not None:
        for name in sorted(builder.names):
            if name not in known_columns:
                hint = did_you_mean(close_matches(name, sorted(known_columns)))
                raise RuleError(f"unknown column {name!r} in rule {source!r}{hint}")
    return Rule(source, frozenset(builder.names), evaluator, tuple(builder.memory))


def _depth(root: ast.AST) -> int:
    """The tree's depth, found without recursion."""
    deepest, stack = 0, [(root, 1)]
    while stack:
        node, level = stack.pop()
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in ast.iter_child_nodes(node))
    return deepest


def _reject(node: ast.AST, what: str | None = None) -> RuleError:
    label = what or _WHY.get(type(node), type(node).__name__)
    return RuleError(f"{label} not allowed in a rule", getattr(node, "col_offset", None))


class _Builder:
    """Turns a checked AST into nested closures; collects column names and memory slots."""

    def __init__(self) -> None:
        self.names: set[str] = set()
        self.memory: list[Field] = []

    def build(self, node: ast.AST) -> Evaluator:
        if isinstance(node, ast.BoolOp):
            parts = [self.build(v) for v in node.values]
            combine = np.logical_and if isinstance(node.op, ast.And) else np.logical_or

            def boolop(b: _Batch) -> np.ndarray:
                acc = _truth(parts[0](b))
                for p in parts[1:]:
                    acc = combine(acc, _truth(p(b)))
                return acc

            return boolop
        if isinstance(node, ast.UnaryOp):
            if isinstance(node.op, _BITWISE):
                raise _reject(node, "bitwise operators")
            operand = self.build(node.operand)
            if isinstance(node.op, ast.Not):
                return lambda b: np.logical_not(_truth(operand(b)))
            if isinstance(node.op, ast.USub):
                return lambda b: np.negative(_num(operand(b)))
            return operand
        if isinstance(node, ast.BinOp):
            op = _ARITH.get(type(node.op))
            if op is None:
                what = "bitwise operators" if isinstance(node.op, _BITWISE) else \
                    f"operator {type(node.op).__name__}"
                raise _reject(node, what)
            left, right = self.build(node.left), self.build(node.right)

            def binop(b: _Batch) -> np.ndarray:
                with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                    return op(_num(left(b)), _num(right(b)))

            return binop
        if isinstance(node, ast.Compare):
            ops = [_COMPARE.get(type(o)) for o in node.ops]
            if any(o is None for o in ops):
                raise _reject(node, "'in' and 'is'")
            terms = [self.build(node.left)] + [self.build(c) for c in node.comparators]

            def compare(b: _Batch) -> np.ndarray:
                values = [_num(t(b)) for t in terms]
                acc = None
                with np.errstate(invalid="ignore"):
                    for i, op in enumerate(ops):
                        assert op is not None
                        step = op(values[i], values[i + 1])
                        acc = step if acc is None else np.logical_and(acc, step)
                return acc

            return compare
        if isinstance(node, ast.Call):
            return self.call(node)
        if isinstance(node, ast.Name):
            if node.id.startswith("__"):
                raise _reject(node, "dunder names")
            self.names.add(node.id)
            col = node.id
            return lambda b: b.columns[col]
        if isinstance(node, ast.Constant):
            if isinstance(node.value, bool):
                flag = node.value
                return lambda b: np.bool_(flag)
            if isinstance(node.value, int | float):
                number = float(node.value)
                return lambda b: np.float64(number)
            raise _reject(node, "string and other non-numeric constants")
        raise _reject(node)

    def call(self, node: ast.Call) -> Evaluator:
        if not isinstance(node.func, ast.Name):
            raise _reject(node.func)
        name = node.func.id
        known = sorted([*FUNCTIONS, *KEYED_FUNCTIONS])
        if name.startswith("__") or name not in known:
            hint = did_you_mean(close_matches(name, known))
            raise RuleError(f"unknown function {name!r} in a rule{hint}", node.col_offset)
        if node.keywords:
            raise _reject(node, "keyword arguments")
        arity = FUNCTIONS[name][0] if name in FUNCTIONS else KEYED_FUNCTIONS[name]
        if len(node.args) != arity:
            raise RuleError(f"{name}() takes {arity} argument(s), found {len(node.args)}",
                            node.col_offset)
        if name == "prev":
            return self.prev(node)
        args = [self.build(a) for a in node.args]
        if name in FUNCTIONS:
            fn = FUNCTIONS[name][1]
            return lambda b: fn(*[_num(a(b)) for a in args])
        first, second = args
        slot_a, slot_b = self.slot(1), self.slot(1)
        above = name == "crosses_above"
        now, before = (np.greater, np.less_equal) if above else (np.less, np.greater_equal)

        def crosses(b: _Batch) -> np.ndarray:
            x, y = _column(first(b), b), _column(second(b), b)
            px, py = _prev(x, b, slot_a, 1), _prev(y, b, slot_b, 1)
            with np.errstate(invalid="ignore"):
                return np.logical_and(now(x, y), before(px, py))

        return crosses

    def prev(self, node: ast.Call) -> Evaluator:
        arg, k_node = node.args
        k = k_node.value if isinstance(k_node, ast.Constant) else None
        if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= MAX_PREV_ROWS:
            found = ast.unparse(k_node)
            raise RuleError(f"prev(x, k): k must be a positive integer literal "
                            f"<= {MAX_PREV_ROWS}, found {found!r}", k_node.col_offset)
        inner = self.build(arg)
        slot = self.slot(k)
        return lambda b: _prev(_column(inner(b), b), b, slot, k)

    def slot(self, k: int) -> str:
        """Declare one memory slot: each key's last ``k`` values of an expression."""
        name = f"prev{len(self.memory)}"
        self.memory.append(Field(name, (k,), np.float64, np.nan))
        return name


def _column(x: np.ndarray, b: _Batch) -> np.ndarray:
    """An expression's value as one float64 per row (constants are broadcast)."""
    arr = np.asarray(_num(x), dtype=np.float64)
    if arr.ndim == 0:
        arr = np.full(b.rows, float(arr))
    return arr


def _prev(x: np.ndarray, b: _Batch, slot: str, k: int) -> np.ndarray:
    """x k rows earlier in each key, from this batch or the slot; updates the slot.

    The slot holds each key's last k values, oldest first (NaN where the key has had fewer
    rows). A row of rank r in its key's part of the batch reads slot column r while r < k
    (the (k - r)-th most recent value before the batch), else the batch row k places earlier.
    """
    assert b.state is not None
    n = x.shape[0]
    if n == 0:
        return np.empty(0)
    hist = b.state.arrays[slot]
    order, sorted_keys, rank, keys, starts, counts = b.groups()
    xs = x[order]
    from_hist = rank < k
    got = np.empty(n)
    got[from_hist] = hist[sorted_keys[from_hist], rank[from_hist]]
    later = np.flatnonzero(~from_hist)
    got[later] = xs[later - k]
    # each key's new last k values: position p of its batch rows, or the old slot when p < 0
    pos = counts[:, None] - k + np.arange(k)[None, :]
    new_rows = xs[np.clip(starts[:, None] + pos, 0, n - 1)]
    old = hist[keys[:, None], np.clip(k + pos, 0, k - 1)]
    hist[keys] = np.where(pos >= 0, new_rows, old)
    out = np.empty(n)
    out[order] = got
    return out


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

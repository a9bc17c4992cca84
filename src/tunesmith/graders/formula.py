"""The multi grader's `calculate_output`: arithmetic over sub-grader scores, checked with `ast`.

Only numbers, the sub-graders' names, + - * / ** (unary - and +), parentheses and a few math
functions are allowed; anything else is refused when the grader is validated, never evaluated.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable, Collection, Mapping

from tunesmith.errors import TunesmithError

MAX_LENGTH = 1000  # characters: a formula combines a handful of scores, not a program
FUNCTIONS: dict[str, Callable[..., float]] = {
    "min": min,
    "max": max,
    "abs": abs,
    "floor": math.floor,
    "ceil": math.ceil,
    "exp": math.exp,
    "sqrt": math.sqrt,
    "log": math.log,
}
_OPERATORS: dict[type, Callable[[float, float], float]] = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
    ast.Pow: lambda a, b: a**b,
}


def _refuse(node: ast.AST, what: str, param: str, hint: str | None = None) -> TunesmithError:
    column = getattr(node, "col_offset", 0) + 1
    return TunesmithError(
        f"calculate_output: {what} at column {column} is not allowed.",
        hint
        or "Use numbers, the sub-graders' names, + - * / **, parentheses and "
        + ", ".join(FUNCTIONS)
        + ".",
        param=param,
    )


def check_formula(text: str, names: Collection[str], param: str) -> ast.Expression:
    """The parsed formula; a TunesmithError (located by column) for anything outside the grammar."""
    if len(text) > MAX_LENGTH:
        raise TunesmithError(
            f"calculate_output is {len(text)} characters long; at most {MAX_LENGTH} are allowed.",
            param=param,
        )
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except (SyntaxError, ValueError) as exc:  # ValueError: a NUL character
        msg, offset = (exc.msg, exc.offset or 0) if isinstance(exc, SyntaxError) else (str(exc), 0)
        raise TunesmithError(
            f"calculate_output is not a formula: {msg} at column {offset}.",
            "Write arithmetic over the sub-graders' names, e.g. `0.5 * a + 0.5 * b`.",
            param=param,
        ) from None
    for node in ast.walk(tree):
        _check_node(node, names, param)
    return tree


def _check_node(node: ast.AST, names: Collection[str], param: str) -> None:
    if isinstance(node, (ast.Expression, ast.Load, ast.operator, ast.unaryop)):
        if isinstance(node, ast.operator) and type(node) not in _OPERATORS:
            raise _refuse(node, "this operator", param)
        return
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
            raise _refuse(node, f"the constant {node.value!r}", param)
    elif isinstance(node, ast.Name):
        if node.id not in names and node.id not in FUNCTIONS:
            known = ", ".join(sorted(names)) or "none"
            raise _refuse(node, f"the name {node.id!r}", param, f"The sub-graders are: {known}.")
    elif isinstance(node, ast.BinOp):
        if type(node.op) not in _OPERATORS:
            raise _refuse(node, "this operator", param)
    elif isinstance(node, ast.UnaryOp):
        if not isinstance(node.op, (ast.USub, ast.UAdd)):
            raise _refuse(node, "this operator", param)
    elif isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS or node.keywords:
            raise _refuse(node, "this call", param)
        if not node.args:
            raise _refuse(node, f"{node.func.id}() with no arguments", param)
    else:
        raise _refuse(node, type(node).__name__, param)


def evaluate(tree: ast.Expression, values: Mapping[str, float]) -> float:
    """The formula's value; ArithmeticError or ValueError (e.g. sqrt(-1), 1/0) as Python raises.

    Every number is a float, so `**` overflows at once instead of building a huge integer."""

    def value(node: ast.AST) -> float:
        if isinstance(node, ast.Constant):
            return float(node.value)
        if isinstance(node, ast.Name):
            return float(values[node.id])
        if isinstance(node, ast.UnaryOp):
            return -value(node.operand) if isinstance(node.op, ast.USub) else value(node.operand)
        if isinstance(node, ast.BinOp):
            result = _OPERATORS[type(node.op)](value(node.left), value(node.right))
            if isinstance(result, complex):  # (-8) ** 0.5 is complex in Python, not an error
                raise ValueError("a negative number to a fractional power")
            return float(result)
        if isinstance(node, ast.Call):
            return float(FUNCTIONS[node.func.id](*(value(a) for a in node.args)))  # type: ignore[union-attr]
        raise ValueError(f"unexpected {type(node).__name__}")  # check_formula refused it already

    result = value(tree.body)
    if not math.isfinite(result):
        raise ValueError(f"the formula's value is {result}")
    return result

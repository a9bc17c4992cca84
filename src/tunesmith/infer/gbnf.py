"""GBNF grammars for the engines on a model server: what the builtin engine's ToolCallGuide
(infer/json_guide.py) enforces token by token, as a grammar llama.cpp reads (`grammar`) and vLLM's
xgrammar reads (`structured_outputs.grammar`)."""

from __future__ import annotations

import json


def tool_call_grammar(functions: dict[str, tuple[str, ...] | None], named: str | None) -> str:
    """GBNF for what ToolCallGuide allows after the forced `<tool_call>{"name": "`: one of the
    names, then an object of that function's declared parameters, each at most once (in their
    declared order: a subset of what the guide allows, so the guide accepts every token), or any
    keys where it declares none; with `named`, the name is forced already and only the object
    follows."""
    after_name = '", "arguments": '
    rules, heads = [], []
    for i, (name, keys) in enumerate(functions.items()):
        rules.append(f'args{i} ::= "{{" ws {_members(f"f{i}", keys, rules)} ws "}}"')
        if named is None:
            heads.append(f"{_literal(name + after_name)} args{i}")
        elif name == named:
            heads.append(f"args{i}")
    return "\n".join([f"root ::= {' | '.join(heads)}", *rules, JSON_RULES])


def _members(prefix: str, keys: tuple[str, ...] | None, rules: list[str]) -> str:
    """The inside of an object (a GBNF expression; rules it needs appended to `rules`): with
    `keys`, any of them in order, each at most once; without, any string keys."""
    if not keys:
        return '( string ws ":" ws value ( ws "," ws string ws ":" ws value )* )?'
    members = []
    for j, key in enumerate(keys):
        rules.append(f'{prefix}k{j} ::= {_literal(json.dumps(key))} ws ":" ws value')
        members.append(f"{prefix}k{j}")
    # from key j on: key j then any of the later ones (each after a comma), or start later
    firsts = []
    for j in range(len(members)):
        later = " ".join(f'( ws "," ws {m} )?' for m in members[j + 1 :])
        firsts.append(f"{members[j]} {later}".strip())
    return f"( {' | '.join(firsts)} )?"


def _literal(text: str) -> str:
    return json.dumps(text)  # a JSON string is a valid GBNF string literal


JSON_RULES = r"""value ::= object | array | string | number | "true" | "false" | "null"
object ::= "{" ws ( string ws ":" ws value ( ws "," ws string ws ":" ws value )* )? ws "}"
array ::= "[" ws ( value ( ws "," ws value )* )? ws "]"
string ::= "\"" ( [^"\\\x00-\x1f] | "\\" ( ["\\/bfnrt] | "u" [0-9a-fA-F]{4} ) )* "\""
number ::= "-"? ( "0" | [1-9] [0-9]* ) ( "." [0-9]+ )? ( [eE] [-+]? [0-9]+ )?
ws ::= [ \t\n]{0,32}"""

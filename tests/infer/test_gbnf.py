"""The tool-call grammar the server engines decode under: each declared name, then only that
function's parameters, each at most once."""

from __future__ import annotations

from tunesmith.infer.gbnf import tool_call_grammar


def test_the_tool_call_grammar_offers_each_name_then_only_its_parameters():
    grammar = tool_call_grammar({"get_weather": ("city", "unit"), "ping": None}, None)
    assert grammar.splitlines()[:5] == [
        r'root ::= "get_weather\", \"arguments\": " args0 | "ping\", \"arguments\": " args1',
        r'f0k0 ::= "\"city\"" ws ":" ws value',
        r'f0k1 ::= "\"unit\"" ws ":" ws value',
        # each declared key at most once, in order: the builtin engine's guide allows no repeats
        'args0 ::= "{" ws ( f0k0 ( ws "," ws f0k1 )? | f0k1 )? ws "}"',
        'args1 ::= "{" ws ( string ws ":" ws value ( ws "," ws string ws ":" ws value )* )? ws "}"',
    ]
    named = tool_call_grammar({"get_weather": ("city",), "ping": None}, "ping")
    assert named.splitlines()[0] == "root ::= args1"

"""Offline Python analysis (ast) and code extraction from free text."""

import pytest

from app.arms.codeblocks import fenced_blocks, first_block, raw_python, without_blocks
from app.arms.pyanalysis import analyze, complexity, report


def codes(result):
    return [(i["line"], i["code"]) for i in result["issues"]]


def test_syntax_error_has_line_and_column():
    result = analyze("x = 1\ndef f(x)\n    return x\n")

    error = result["syntax_error"]
    assert (error["line"], error["column"]) == (2, 9)
    assert "expected ':'" in error["message"]
    assert error["text"] == "def f(x)"
    assert result["functions"] == []
    assert "Syntax error at line 2, column 9" in report(result, "snippet")


@pytest.mark.parametrize("code, line, message", [
    ("def f():\n  return 1\n   x = 2\n", 3, "unexpected indent"),
    ("def f():\n    if x:\n        pass\n      y = 1\n", 4, "unindent does not match"),
    ("print('a'\n", 1, "never closed"),
    ("for x in y:\nbreak\n", 2, "expected an indented block"),
    ("return 5\n", 1, "'return' outside function"),  # found by the compile stage, not the parser
    ("def f():\n    yield = 3\n", 2, ""),
])
def test_various_syntax_errors(code, line, message):
    error = analyze(code)["syntax_error"]

    assert error is not None and error["line"] == line
    assert message in error["message"]


def test_null_bytes_are_reported_not_raised():
    error = analyze("x = 1\0")["syntax_error"]

    assert error["line"] is None and "null" in error["message"]


def test_functions_classes_and_complexity():
    code = (
        "class Shape(Base, metaclass=Meta):\n"
        "    def area(self):\n"
        "        return 0\n"
        "\n"
        "    async def load(self, items):\n"
        "        for i in items:\n"
        "            if i and i.ok or i.forced:\n"
        "                yield i\n"
        "        while False:\n"
        "            pass\n"
        "\n"
        "def outer(x):\n"
        "    def inner(y):\n"
        "        return [z for z in y if z if z > 1]\n"
        "    try:\n"
        "        return inner(x) if x else None\n"
        "    except ValueError:\n"
        "        return None\n"
    )

    result = analyze(code)

    assert result["syntax_error"] is None
    assert result["classes"] == [{"name": "Shape", "line": 1, "end_line": 10,
                                  "bases": ["Base"], "methods": ["area", "load"]}]
    by_name = {f["name"]: (f["line"], f["complexity"]) for f in result["functions"]}
    assert by_name == {
        "Shape.area": (2, 1),
        "Shape.load": (5, 6),   # for, if, and, or, while
        "outer": (12, 3),       # if-expression, except; inner is measured on its own
        "outer.inner": (13, 4),  # comprehension, two ifs
    }


def test_high_complexity_is_an_issue_above_the_threshold():
    branches = "".join(f"    if x == {n}:\n        return {n}\n" for n in range(6))
    code = f"def busy(x):\n{branches}    return -1\n"

    assert complexity(__import__("ast").parse(code).body[0]) == 7
    issues = analyze(code, complexity_threshold=5)["issues"]
    assert "high-complexity" in [i["code"] for i in issues]
    assert analyze(code, complexity_threshold=10)["issues"] == []


def test_obvious_issues_are_found_with_lines():
    code = (
        "from __future__ import annotations\n"          # 1 never reported
        "import os\n"                                    # 2 unused
        "import json, sys as system\n"                   # 3 system unused
        "from typing import List, Dict\n"                # 4 Dict unused
        "\n"
        "def f(items=[], *, cache={}, size=list()):\n"   # 6 three mutable defaults
        "    try:\n"
        "        data = eval(items)\n"                   # 8 eval
        "    except:\n"                                  # 9 bare except
        "        data = None\n"
        "    if data == None or None != data:\n"         # 11 two None comparisons
        "        exec('x = 1')\n"                        # 12 exec
        "    list = [1]\n"                               # 13 shadowed builtin
        "    return json.dumps(list), List\n"
        "\n"
        "def id(type, self=None):\n"                     # 16 function id + argument type
        "    return type\n"
        "\n"
        "class Model:\n"
        "    id = 3\n"                                   # class attribute: not shadowing
        "    def filter(self):\n"                        # method: not shadowing
        "        pass\n"
    )

    issues = codes(analyze(code))

    assert issues == [
        (2, "unused-import"), (3, "unused-import"), (4, "unused-import"),
        (6, "mutable-default"), (6, "mutable-default"), (6, "mutable-default"),
        (8, "eval-exec"), (9, "bare-except"), (11, "none-comparison"), (11, "none-comparison"),
        (12, "eval-exec"), (13, "shadowed-builtin"), (16, "shadowed-builtin"),
        (16, "shadowed-builtin"),
    ]
    messages = " ".join(i["message"] for i in analyze(code)["issues"])
    assert "'system'" in messages and "'Dict'" in messages and "`is None`" in messages


def test_all_and_noqa_count_as_use():
    code = 'import os\nimport sys  # noqa: F401\n__all__ = ["os"]\n'

    assert analyze(code)["issues"] == []


def test_syntax_warnings_in_the_code_are_findings_not_errors():
    # Under filterwarnings=error these would raise if the analyser let them escape.
    result = analyze('import re\npattern = re.compile("\\d+")\nok = pattern is 1\n')

    assert result["syntax_error"] is None
    found = [i for i in result["issues"] if i["code"] == "syntax-warning"]
    assert {i["line"] for i in found} == {2, 3}
    assert any("escape sequence" in i["message"] for i in found)


def test_clean_code_report():
    result = analyze("def add(a, b):\n    return a + b\n")

    assert result["issues"] == []
    text = report(result, "context")
    assert "parses cleanly" in text and "add (line 1, complexity 1)" in text
    assert "No obvious issues" in text


def test_deeply_nested_code_does_not_crash():
    result = analyze("x = " + "(" * 5000 + ")" * 5000)

    assert result["syntax_error"] is not None


def test_fenced_blocks_with_labels_lines_and_unterminated_fence():
    text = "Intro\n```python\ndef f():\n    pass\n```\nmiddle\n~~~js\nlet a = 1;\n~~~\n```\nraw\n"

    blocks = fenced_blocks(text)

    assert [(b.language, b.code, b.line) for b in blocks] == [
        ("python", "def f():\n    pass", 3), ("js", "let a = 1;", 8), ("", "raw", 11)]
    assert without_blocks(text) == "Intro\nmiddle"
    assert first_block(text, "javascript").code == "let a = 1;"  # js is javascript
    assert first_block(text, "python").language == "python"
    assert first_block(text, "rust").code == "raw"  # an unlabelled block beats a wrong label
    assert first_block("```js\nx\n```", "rust").code == "x"  # else the first block at all
    assert first_block("no code here", "python") is None


def test_a_longer_fence_is_not_closed_by_a_shorter_one():
    text = "````md\n```python\nx = 1\n```\n````\n"

    assert [b.code for b in fenced_blocks(text)] == ["```python\nx = 1\n```"]


def test_many_backticks_cost_linear_time():
    import time

    started = time.monotonic()
    fenced_blocks("```\n" * 20000)

    assert time.monotonic() - started < 1


def test_raw_python_after_prose_and_before_a_question():
    text = "Here is my function:\ndef f(x):\n    return x * 2\n\nWhat is wrong with it?\n"

    block = raw_python(text)

    assert block.line == 2
    assert block.code == "def f(x):\n    return x * 2"


@pytest.mark.parametrize("text, found", [
    ("x = [1, 2]\nfor i in x:\n    print(i)\n", True),  # no def/import, but parses as code
    ("import the CSV and sort it by price", False),
    ("What is the capital of France?", False),
    ("hello", False),
    ('[{"a": 1}, {"a": [2, 3]}]', False),  # JSON parses as Python but is data
])
def test_raw_python_is_not_fooled_by_prose(text, found):
    assert (raw_python(text) is not None) is found

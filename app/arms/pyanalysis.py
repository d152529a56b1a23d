"""Static analysis of Python source with ``ast``: never imports or runs the code it reads.

Reports syntax errors (line, column), functions and classes with their lines, cyclomatic
complexity per function (1 + decision points, the McCabe count radon also uses) and obvious
issues. The unused-import check is approximate: names used only inside string annotations or
re-exported without ``__all__`` are reported. A line containing ``noqa`` is never reported.
"""

from __future__ import annotations

import ast
import builtins
import warnings
from typing import Any

# Names site.py adds for interactive use: shadowing them is harmless.
_SITE_NAMES = {"copyright", "credits", "license", "exit", "quit", "help"}
BUILTIN_NAMES = frozenset(n for n in dir(builtins) if not n.startswith("_")) - _SITE_NAMES
_MUTABLE_CALLS = {"list", "dict", "set", "bytearray", "defaultdict", "OrderedDict", "deque",
                  "Counter"}
_MUTABLE_NODES = (ast.List, ast.Dict, ast.Set, ast.ListComp, ast.DictComp, ast.SetComp)
_BRANCHES = (ast.If, ast.IfExp, ast.For, ast.AsyncFor, ast.While, ast.ExceptHandler,
             ast.match_case)
_FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef)


def analyze(code: str, *, complexity_threshold: int = 10) -> dict[str, Any]:
    result: dict[str, Any] = {"lines": len(code.splitlines()), "syntax_error": None,
                              "functions": [], "classes": [], "issues": []}
    with warnings.catch_warnings(record=True) as caught:
        # Recorded, not printed or raised: a warning in analysed code is a finding, not our error.
        warnings.simplefilter("always")
        try:
            tree = ast.parse(code)
            # Compiling (never running) catches what the parser lets through: 'return' outside
            # a function, 'break' outside a loop, and the compiler's SyntaxWarnings.
            compile(tree, "<analysed>", "exec", dont_inherit=True)
        except SyntaxError as exc:
            result["syntax_error"] = {
                "line": exc.lineno, "column": exc.offset, "end_line": exc.end_lineno,
                "end_column": exc.end_offset, "message": exc.msg,
                "text": (exc.text or "").rstrip("\n")}
        except ValueError as exc:  # e.g. "source code string cannot contain null bytes"
            result["syntax_error"] = {"line": None, "column": None, "message": str(exc)}
        except (RecursionError, MemoryError):
            result["syntax_error"] = {"line": None, "column": None,
                                      "message": "code is too deeply nested to analyse"}
    issues = [_issue(w.lineno or 1, 0, "syntax-warning", str(w.message)) for w in caught
              if issubclass(w.category, (SyntaxWarning, DeprecationWarning))]
    if result["syntax_error"] is None:
        visitor = _Visitor()
        visitor.visit(tree)
        result["functions"], result["classes"] = visitor.functions, visitor.classes
        issues += visitor.issues + visitor.unused_imports()
        issues += [_issue(f["line"], 0, "high-complexity",
                          f"{f['name']} has cyclomatic complexity {f['complexity']} "
                          f"(threshold {complexity_threshold}); consider splitting it")
                   for f in visitor.functions if f["complexity"] > complexity_threshold]
    source_lines = code.splitlines()
    result["issues"] = sorted(
        (i for i in issues if not _noqa(source_lines, i["line"])),
        key=lambda i: (i["line"], i["column"], i["code"]))
    return result


def complexity(func: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    score = 1
    todo: list[ast.AST] = list(func.body)
    while todo:
        node = todo.pop()
        if isinstance(node, (*_FUNCTIONS, ast.ClassDef)):
            continue  # nested definitions are measured on their own
        if isinstance(node, _BRANCHES):
            score += 1
        elif isinstance(node, ast.BoolOp):
            score += len(node.values) - 1
        elif isinstance(node, ast.comprehension):
            score += 1 + len(node.ifs)
        todo.extend(ast.iter_child_nodes(node))
    return score


class _Visitor(ast.NodeVisitor):
    def __init__(self) -> None:
        self.scopes: list[tuple[str, str]] = []  # (kind, name), kind "def" or "class"
        self.functions: list[dict[str, Any]] = []
        self.classes: list[dict[str, Any]] = []
        self.issues: list[dict[str, Any]] = []
        self.imports: list[tuple[str, ast.Import | ast.ImportFrom]] = []
        self.used: set[str] = set()

    def _qualname(self, name: str) -> str:
        return ".".join([n for _, n in self.scopes] + [name])

    def _in_class_body(self) -> bool:
        return bool(self.scopes) and self.scopes[-1][0] == "class"

    def _shadow(self, name: str, node: ast.stmt | ast.expr | ast.arg | ast.excepthandler,
                what: str) -> None:
        if name in BUILTIN_NAMES:
            self.issues.append(_issue(node.lineno, node.col_offset, "shadowed-builtin",
                                      f"{what} {name!r} shadows the builtin of the same name"))

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.functions.append({"name": self._qualname(node.name), "line": node.lineno,
                               "end_line": node.end_lineno, "complexity": complexity(node)})
        if not self._in_class_body():
            self._shadow(node.name, node, "function")
        self._check_defaults(node.args)
        self.scopes.append(("def", node.name))
        self.generic_visit(node)
        self.scopes.pop()

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self.classes.append({
            "name": self._qualname(node.name), "line": node.lineno, "end_line": node.end_lineno,
            "bases": [ast.unparse(b) for b in node.bases],
            "methods": [n.name for n in node.body if isinstance(n, _FUNCTIONS)]})
        if not self._in_class_body():
            self._shadow(node.name, node, "class")
        self.scopes.append(("class", node.name))
        self.generic_visit(node)
        self.scopes.pop()

    def visit_Lambda(self, node: ast.Lambda) -> None:
        self._check_defaults(node.args)
        self.generic_visit(node)

    def _check_defaults(self, args: ast.arguments) -> None:
        positional = args.posonlyargs + args.args
        pairs = list(zip(positional[len(positional) - len(args.defaults):], args.defaults,
                         strict=True))
        pairs += [(a, d) for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True)
                  if d is not None]
        for arg, default in pairs:
            if isinstance(default, _MUTABLE_NODES) or (
                    isinstance(default, ast.Call) and isinstance(default.func, ast.Name)
                    and default.func.id in _MUTABLE_CALLS):
                self.issues.append(_issue(
                    default.lineno, default.col_offset, "mutable-default",
                    f"argument {arg.arg!r} has a mutable default, shared by every call; "
                    "use None and create it inside the function"))

    def visit_arg(self, node: ast.arg) -> None:
        if node.arg not in ("self", "cls"):
            self._shadow(node.arg, node, "argument")
        self.generic_visit(node)

    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, ast.Store):
            if not self._in_class_body():  # class attributes (e.g. ORM columns) are not shadowing
                self._shadow(node.id, node, "variable")
        else:
            self.used.add(node.id)

    def visit_Assign(self, node: ast.Assign) -> None:
        if any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets) and isinstance(
                node.value, (ast.List, ast.Tuple)):
            self.used.update(e.value for e in node.value.elts
                             if isinstance(e, ast.Constant) and isinstance(e.value, str))
        self.generic_visit(node)

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> None:
        if node.type is None:
            self.issues.append(_issue(node.lineno, node.col_offset, "bare-except",
                                      "bare `except:` also catches KeyboardInterrupt and "
                                      "SystemExit; name the exceptions to handle"))
        if node.name:
            self._shadow(node.name, node, "exception name")
        self.generic_visit(node)

    def visit_Compare(self, node: ast.Compare) -> None:
        left = node.left
        for op, right in zip(node.ops, node.comparators, strict=True):
            none_side = any(isinstance(side, ast.Constant) and side.value is None
                            for side in (left, right))
            if isinstance(op, (ast.Eq, ast.NotEq)) and none_side:
                better = "is None" if isinstance(op, ast.Eq) else "is not None"
                self.issues.append(_issue(node.lineno, node.col_offset, "none-comparison",
                                          f"comparison to None with ==/!=; use `{better}`"))
            left = right
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        if isinstance(node.func, ast.Name) and node.func.id in ("eval", "exec"):
            self.issues.append(_issue(node.lineno, node.col_offset, "eval-exec",
                                      f"{node.func.id}() runs arbitrary code; avoid it on any "
                                      "input you do not fully control"))
        self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.imports.append((alias.asname or alias.name.split(".")[0], node))

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.module != "__future__":
            self.imports.extend((a.asname or a.name, node) for a in node.names if a.name != "*")

    def unused_imports(self) -> list[dict[str, Any]]:
        return [_issue(node.lineno, node.col_offset, "unused-import",
                       f"{name!r} is imported but never used")
                for name, node in self.imports if name not in self.used]


def _issue(line: int, column: int, code: str, message: str) -> dict[str, Any]:
    return {"line": line, "column": column + 1, "code": code, "message": message}


def _noqa(lines: list[str], line: int) -> bool:
    return 0 < line <= len(lines) and "noqa" in lines[line - 1].lower()


def report(analysis: dict[str, Any], label: str) -> str:
    """A short human-readable account of one analysis, for the step's ``result``."""
    error = analysis["syntax_error"]
    if error:
        where = f"line {error['line']}" if error["line"] else "input"
        if error.get("source_line"):
            where += f" (line {error['source_line']} of the text it came from)"
        if error.get("column"):
            where += f", column {error['column']}"
        text = f"{label}: {analysis['lines']} lines of Python.\nSyntax error at {where}: " \
               f"{error['message']}"
        if error.get("text"):
            text += f"\n    {error['text'].strip()}"
        return text
    parts = [f"{label}: {analysis['lines']} lines of Python, parses cleanly."]
    if analysis["functions"]:
        parts.append(f"Functions ({len(analysis['functions'])}): " + "; ".join(
            f"{f['name']} (line {f['line']}, complexity {f['complexity']})"
            for f in analysis["functions"]))
    if analysis["classes"]:
        parts.append(f"Classes ({len(analysis['classes'])}): " + "; ".join(
            f"{c['name']} (line {c['line']})" for c in analysis["classes"]))
    if analysis["issues"]:
        parts.append(f"Issues ({len(analysis['issues'])}):")
        parts += [f"- line {i['line']}, col {i['column']} [{i['code']}] {i['message']}"
                  for i in analysis["issues"]]
    else:
        parts.append("No obvious issues found.")
    return "\n".join(parts)

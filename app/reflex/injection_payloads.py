"""Command payload rules (type ``command_payload``): code sent to be run that probes or harms the
machine running it, matched on the fold view (homoglyphs folded to Latin, symbols kept).

``command_injection`` (app.reflex.injection_syntax) finds a command smuggled into a value
("report.txt; rm -rf ~"). This family finds the payload itself, in the shapes remote-code-
execution probes take (OWASP's command injection and code injection pages; the reverse-shell and
fork-bomb one-liners every red-team cheat sheet lists):

* a process spawned from an interpreter one-liner (``node -e 'require("child_process")...'``,
  ``ruby -e 'system(...)'``, ``kotlin ... Runtime.getRuntime().exec``, ``ocaml Sys.command``):
  high; critical when what it spawns is a probe or a destructive command;
* the classic probe and destructive commands where code runs: ``whoami`` or ``id`` as the
  command of a code span, a ``sh -c`` or a spawn call; ``shutdown``/``reboot``/``halt``;
  ``kill -9 -1``; fork bombs and endless busy loops;
* obfuscated code: command and API names written in leetspeak (``5h -c``, ``syst3m(``,
  ``r3quire``) or with Cyrillic/Greek look-alikes inside a code span (``pythоn`` with a
  Cyrillic "о"; ``obfuscated_code`` below). Ordinary code never disguises its own names.

Names are matched leet-tolerant (``_leet``): a probe written ``wh0am!`` is the same probe.
Benign code that merely runs a process (``subprocess.run(["ls"])`` in a script, ``curl ... |
sh`` install lines) is not a payload by itself: those stay below ``high`` or unmatched.
"""

from __future__ import annotations

import re

from app.reflex.injection_rules import Rule
from app.reflex.normalize import CONFUSABLES

# Leetspeak and symbol substitutions per letter, the ones attackers use inside names.
_LEET_CLASSES = {"a": "a4@", "e": "e3€", "i": "i1!|", "l": "l1|", "o": "o0", "s": "s5$",
                 "t": "t7+", "g": "g9", "b": "b8", "z": "z2"}
_LEET_CHARS = "0-9@$!|€+"


def _leet(word: str) -> str:
    """``word`` as a pattern that also matches its leetspeak spellings."""
    out = []
    for ch in word:
        cls = _LEET_CLASSES.get(ch)
        out.append(f"[{re.escape(cls)}]" if cls else re.escape(ch))
    return "".join(out)


def _names(*names: str) -> str:
    return "(?:" + "|".join(_leet(n) for n in names) + ")"


_END = r"(?![\w@$!|€])"
# Separators attackers pad commands with ("sh , -c", "rm , -rf , /"): blanks and lone commas.
_NOISE = r"[ \t,.:_]{1,5}"
_START = r"(?<![\w@$!|€./-])"
# Code given on the command line (-e, -c, -r, -x, --eval, eval): the match starts at the flag,
# after a command word, so the scan tries it only where a "-" or "eval" stands (a pattern that
# started at the interpreter's name would be tried at every word).
_ONE_LINER = (r"(?:(?<=[\w.+@$!|€][ \t])(?:-[ecrx3]|--eval|--exec|-command)|(?<![\w-])eval)"
              r"[ \t]{1,3}['\"]")
# Calls that start another process, in the languages such one-liners are written in.
_SPAWN = (_names("exec", "spawn", "popen") + r"(?:[lvpe]{1,3}|[234]|sync|file(?:sync)?)?|"
          + _names("system", "execute", "fork", "passthru", "shell_exec", "proc_open",
                   "callcommand", "command", "cmd", "runsync", "run", "perform", "shell", "call",
                   "check_output", "getoutput"))
_SPAWN_CALL = (r"(?:" + _names("os", "sys", "process", "runtime", "subprocess", "child_process",
                               "kernel", "io", "processbuilder", "posix", "unix", "ext", "shell")
               + r"[ \t]{0,2}[.:]{1,2}[ \t]{0,2}(?:getruntime\(\)\.)?)?(?:" + _SPAWN + r")" + _END)
_BARE_CALL = (r"(?:" + _names("system", "exec", "passthru", "shell_exec", "spawn") + r"|"
              + _names("sys", "os", "kernel", "io", "process", "shell") + r"[.:]{1,2}"
              + _names("command", "cmd", "run", "system", "exec", "spawn") + r")" + _END)
# Names whose appearance in a one-liner means it reaches the operating system.
_OS_API = _names("child_process", "runtime.getruntime", "processbuilder", "sys.command",
                 "os.system", "os.popen", "os.execute", "subprocess", "pty.spawn",
                 "proc_open", "shell_exec", "system.process", "process.runsync")
# Probe and destructive commands: what a payload runs to learn where it is or to do harm.
# ``id`` is also an ordinary word in code spans ("the `id` column"): it counts only where a
# command surely runs (a spawn call, ``sh -c``, ``$( )``, a chain).
_PROBE = _names("whoami", "uname -a", "net user", "ipconfig /all")
_WEAK_PROBE = _names("id")
_HARM = (_names("shutdown", "reboot", "halt", "poweroff", "init 0", "init 6", "kill -9 -1",
                "killall5", "mkfs", "format c:", "del /f /s /q c:") + _END
         + r"|" + _names("rm") + _NOISE + r"-[rf]{2}" + _NOISE
         + r"(?:--no-preserve-root[ \t]{1,3})?(?:/\*?|~/?)(?=[\s`'\";&|)]|$)"
         r"|" + _names("nc", "ncat", "netcat") + r"[ \t]{1,3}(?:[^\s'\"`]{1,60}[ \t]{1,3}){0,3}"
         r"-[ec]\b|/dev/(?:tcp|udp)/|\bdd[ \t]{1,3}[^\n`'\"]{0,60}[o0]f=/dev/"
         r"|\bch(?:mod|own)[ \t]{1,3}(?:-r[ \t]{1,3})?[\w:.]{1,20}[ \t]{1,3}/(?:[ \t]{1,3}-r)?"
         r"(?=[\s`'\";&|)]|$)"
         r"|\b(?:cat|type|more|less|head|tail)[ \t]{1,3}/etc/(?:shadow|sudoers)\b"
         r"|\bremove-item\b[^\n`'\"]{0,60}-recurse[^\n`'\"]{0,60}[a-z]:\\(?=[\s`'\";]|$)")
_BAD = r"(?:" + _PROBE + _END + r"|" + _HARM + r")"
_ANY_BAD = r"(?:" + _PROBE + _END + r"|" + _WEAK_PROBE + _END + r"|" + _HARM + r")"
# A shell started from a one-liner (GTFOBins' "perl -e 'exec \"/bin/sh\"'", pty.spawn): only
# there, since scripts start shells for ordinary reasons (subprocess.run(["bash", "build.sh"])).
_SHELL = _names("sh", "bash", "zsh", "dash", "ksh", "cmd.exe", "powershell") + r"['\"\\\])]"
# Where a command starts inside code: a code span, a shell -c string, $( ), a chain.
_IN_CODE = r"`[ \t]{0,2}"
_RUNS_AT = (r"(?:\$\([ \t]{0,2}|" + _names("sh", "bash", "zsh", "dash", "cmd", "pwsh",
                                                      "powershell")
            + r"(?:\.exe)?" + _NOISE + r"(?:-\w{1,10}[ \t]{1,3}){0,2}[-/][ck][ \t]{1,3}['\"]?"
              r"[ \t]{0,2}|(?:;|&&|\|\|)[ \t]{0,3})")
# Escaped quotes too: one-liners nest strings ("exec('os.system(\\"whoami\\")')").
_QUOTES = r"[\\\"'`\[]{0,4}"
_QUOTE_OR_PAREN = r"[ \t]{0,2}[(\[]?[ \t]{0,2}" + _QUOTES + r"[ \t]{0,2}"

# An endless loop's head: while(1), while true, while - :, for(;;), loop. One-liners escape their
# newlines, so "\\nwhile" starts one too.
_LOOP = (r"(?:\b|\\n)(?:" + _leet("while") + r"[ \t]{0,2}(?:-[ \t]{1,3})?\(?[ \t]{0,2}"
         r"(?:1|" + _leet("true") + r"|!0|:|\[[ \t]{1,3}1[ \t]{1,3}\])[ \t]{0,2}\)?"
         r"|for[ \t]{0,2}\([ \t]{0,2};[ \t]{0,2};[ \t]{0,2}\)|loop)")

PAYLOADS: list[Rule] = [
    # A process spawned from an interpreter one-liner; critical when it spawns a probe or harm.
    Rule("cp1", "command_payload", "critical", "fold",
         _ONE_LINER + r"[^\n]{0,200}?" + _SPAWN_CALL + _QUOTE_OR_PAREN
         + r"(?:[\w./-]{0,20}/)?(?:" + _ANY_BAD + r"|" + _SHELL + r")"),
    Rule("cp2", "command_payload", "medium", "fold",
         _ONE_LINER + r"[^\n]{0,200}?(?:" + _OS_API + r"|" + _SPAWN_CALL + r"[ \t]{0,2}[(\[\"'])"),
    # A spawn call anywhere (a code span, a script) whose command is a probe or harm: a call
    # with brackets, or the bare-string forms (ruby's system "x", OCaml's Sys.command "x").
    Rule("cp3", "command_payload", "critical", "fold",
         _START + r"(?:" + _SPAWN_CALL + r"[ \t]{0,2}[(\[]|" + _BARE_CALL + r"[ \t]{1,2}[\"'])"
         + r"[ \t]{0,2}" + _QUOTES + r"[ \t]{0,2}(?:[\w./-]{0,20}/)?" + _ANY_BAD),
    # A probe or destructive command where a command starts in code.
    Rule("cp4", "command_payload", "critical", "fold",
         r"(?:" + _RUNS_AT + _ANY_BAD + r"|" + _IN_CODE + _BAD + r")"),
    # Fork bombs and endless busy loops (the shell's :(){ :|:& };: is command_injection sh3).
    Rule("cp5", "command_payload", "critical", "fold",
         _LOOP + r"[ \t]{0,2}(?:;[ \t]{0,2}" + _leet("do") + r"\b|:|\{|" + _leet("do")
         + r"\b)?[ \t]{0,2}\{?[ \t]{0,2}(?:os\.|process\.|posix\.|unix\.)?fork\b"
         r"|\bfork[ \t]{0,2}while[ \t]{0,2}(?:1|fork)\b|%0\|%0"),
    Rule("cp6", "command_payload", "high", "fold",
         _LOOP + r"[ \t]{0,2};[ \t]{0,2}" + _leet("do") + r"[ \t]{1,3}(?::|true)[ \t]{0,2};"
         r"[ \t]{0,2}" + _leet("done")),
    # Command and API names in leetspeak: a leet character inside the name, none around it.
    Rule("cp7", "command_payload", "high", "fold",
         _START + r"(?=[a-z]{0,12}[" + _LEET_CHARS + r"])"
         + _names("whoami", "system", "exec", "python", "bash", "node", "perl", "ruby",
                  "require", "child_process", "import", "eval", "powershell", "invoke",
                  "runtime", "spawn", "shutdown", "reboot", "execute", "popen", "subprocess",
                  "getruntime", "sh -c", "bash -c", "curl", "wget")
         + _END),
]

# Latin letters and the Cyrillic/Greek look-alikes normalize.py folds, in one token of code.
_CODE_SPAN = re.compile(r"```.{0,3000}?(?:```|$)|`[^`\n]{1,300}`", re.S)
# Case by hand: under IGNORECASE Python matches the dotless "ı" to "i", a Latin letter.
_MIXED = re.compile(r"\b(?=[^\W_]{0,40}?[a-zA-Z])(?=[^\W_]{0,40}?[" + CONFUSABLES + r"])"
                    r"[^\W_]{2,40}\b")


def obfuscated_code(text: str) -> list[tuple[int, int]]:
    """Spans of code tokens (inside backtick code) that mix Latin letters with Cyrillic or
    Greek look-alikes: ``pythоn``, ``whοami``. Code written to be read never does that."""
    if text.isascii() or "`" not in text:
        return []
    spans = []
    for span in _CODE_SPAN.finditer(text):
        for token in _MIXED.finditer(text, span.start(), span.end()):
            spans.append(token.span())
    return spans

"""Syntax rules, matched on the fold view (symbols kept, lower-cased): chat-template and role
delimiters, shell and SQL injection, template injection, exfiltration through URLs."""

from __future__ import annotations

from app.reflex.injection_rules import Rule

# Query parameters before the one that matters: "a=1&b=2&c=" ('&' ends each, so no ambiguity).
_PARAMS = r"(?:[\w-]{1,40}=[^\s&#)\"']{0,60}&){0,8}[\w-]{1,40}"
_LINE = r"(?:^|(?<=\n))[ \t]{0,3}"
_SH = r"(?:ba|z|da|k)?sh"
_SECRET_FILES = r"(?:/etc/(?:passwd|shadow|sudoers)|~/\.ssh/|~/\.aws/|/root/|\.env\b)"

SYNTAX: list[Rule] = [
    # -- exfiltration through URLs that carry data ------------------------------------------
    Rule("xf2", "data_exfiltration", "high", "fold",
         r"!\[[^\]\n]{0,100}\]\([ \t]{0,2}https?://[^)\s?]{1,300}\?" + _PARAMS + r"="
         r"(?:\{|\$|%7b|\[|<)"),
    Rule("xf3", "data_exfiltration", "high", "fold",
         r"<img\b[^>\n]{0,100}src=[\"']?https?://[^\"'\s>?]{1,300}\?" + _PARAMS + r"="
         r"(?:\{|\$|%7b|\[|<)"),
    Rule("xf4", "data_exfiltration", "high", "fold",
         r"https?://[^\s?]{1,300}\?" + _PARAMS + r"=[^\s&]{0,10}(?:\{|\[|<|%7b)[ \t]{0,2}"
         r"(?:conversation|chat|history|secrets?|prompt|system|password|token|api_?key|memory|"
         r"context|email|user_?data)"),
    # -- delimiter injection -------------------------------------------------------------------
    Rule("de1", "delimiter_injection", "high", "fold",
         r"<\|(?:im_start|im_end|im_sep|endoftext|system|user|assistant|begin_of_text|end_of_text|"
         r"start_header_id|end_header_id|eot_id|eom_id|fim_prefix|fim_suffix|fim_middle)\|>"),
    Rule("de2", "delimiter_injection", "high", "fold",
         r"\[/?inst\]|<</?sys>>|</(?:system|instructions?|prompt|sys|system_prompt)>"),
    Rule("de3", "delimiter_injection", "medium", "fold",
         r"<(?:system|instructions?|sys|system_prompt|admin)>"),
    Rule("de4", "delimiter_injection", "high", "fold",
         _LINE + r"#{1,4}[ \t]{0,2}(?:new[ \t]{1,2})?(?:instruction|system(?:[ \t]{1,2}prompt)?|"
         r"system[ \t]{1,2}message|human|assistant|response)[ \t]{0,2}(?::|(?=\n|$))"),
    Rule("de5", "delimiter_injection", "high", "fold",
         r"[=\-#*]{3}[ \t]{0,2}(?:end|begin|start)[ \t]{1,2}(?:of[ \t]{1,2})?(?:the[ \t]{1,2})?"
         r"(?:system|user|admin|original)?[ \t]{0,2}(?:prompt|instructions?|message|input|context)"
         r"[ \t]{0,2}[=\-#*]{0,40}"),
    Rule("de6", "delimiter_injection", "high", "fold",
         _LINE + r"system[ \t]{0,2}:[ \t]{0,3}(?:you|ignore|new|from now on|disregard|"
                 r"the assistant|"
         r"override|forget)\b"),
    Rule("de8", "delimiter_injection", "high", "fold",
         r"<!--[ \t]{0,3}(?:system|assistant|user|admin|ai|instructions?)[ \t]{0,2}:"),
    Rule("de9", "delimiter_injection", "high", "fold",
         r"\[\[?[ \t]{0,2}(?:system|admin|developer|root)[ \t_-]{0,2}(?:override|prompt|message|"
         r"instruction|mode|command)s?[ \t]{0,2}\]\]?"
         r"|</(?:user|human)>[ \t\n]{0,3}<(?:system|assistant|admin)>"),
    Rule("de7", "delimiter_injection", "low", "fold",
         _LINE + r"(?:system|human|assistant|user)[ \t]{0,2}:"),
    # -- command / shell injection -------------------------------------------------------------
    Rule("sh1", "command_injection", "critical", "fold",
         r"\b" + _SH + r"[ \t]{1,3}-i[ \t]{0,3}>&?[ \t]{0,3}/dev/(?:tcp|udp)/"
         r"|/dev/(?:tcp|udp)/[\w.-]{1,100}/\d{1,5}"),
    Rule("sh2", "command_injection", "critical", "fold",
         r"\b(?:nc|ncat|netcat)\b[^\n|;&]{0,60}[ \t]-[ec][ \t]{0,3}/bin/" + _SH + r"\b"),
    Rule("sh3", "command_injection", "critical", "fold",
         r":\(\)[ \t]{0,2}\{[ \t]{0,2}:\|:[ \t]{0,2}&[ \t]{0,2}\}[ \t]{0,2};[ \t]{0,2}:"),
    Rule("sh4", "command_injection", "critical", "fold",
         r"\brm[ \t]{1,3}-(?:rf|fr|r[ \t]{1,3}-f|f[ \t]{1,3}-r)[ \t]{1,3}(?:--no-preserve-root"
         r"[ \t]{1,3})?/(?:\*|[ \t]|$|\n|;|&)|\bmkfs(?:\.\w+)?[ \t]{1,3}/dev/"
         r"|\bdd[ \t]{1,3}if=[^\n]{0,80}of=/dev/(?:sd|hd|nvme|xvd)"),
    Rule("sh5", "command_injection", "critical", "fold",
         r"\b(?:iex|invoke-expression)\b[^\n]{0,120}(?:downloadstring|downloadfile|webclient|"
         r"invoke-webrequest|iwr)"),
    Rule("sh6", "command_injection", "high", "fold",
         r"\b(?:curl|wget)\b[^\n|;&]{0,200}\|[ \t]{0,3}(?:sudo[ \t]{1,3})?" + _SH + r"\b"),
    Rule("sh7", "command_injection", "high", "fold",
         r"(?:;|&&|\|\|)[ \t]{0,3}(?:sudo[ \t]{1,3})?"
         r"rm[ \t]{1,3}-[a-z]{0,3}[rf][a-z]{0,3}[ \t]{1,3}"
         r"(?:~|\*|\$home|/(?:[ \t*]|$)|\.\.?/?(?:[ \t]|$))"),
    Rule("sh8", "command_injection", "high", "fold",
         r"(?:;|&&|\|\||\|)[ \t]{0,3}(?:sudo[ \t]{1,3})?"
         r"(?:cat|less|more|head|tail|cp|scp)[ \t]{1,3}"
         + _SECRET_FILES + r"|(?:;|&&|\|)[ \t]{0,3}(?:shutdown|reboot|halt|poweroff)\b"
         r"|(?:;|&&|\|)[ \t]{0,3}(?:nc|ncat|netcat)[ \t]{1,3}[\w.-]{1,100}[ \t]{1,3}\d{1,5}"),
    Rule("sh9", "command_injection", "high", "fold",
         r"\$\([ \t]{0,3}(?:curl|wget|nc|ncat|bash|sh|rm|cat[ \t]{1,3}" + _SECRET_FILES
         + r"|whoami|id|uname|python|"
         r"perl|base64[ \t]{1,3}-d)\b[^)\n]{0,200}\)"),
    Rule("sh10", "command_injection", "high", "fold",
         r"`[ \t]{0,3}(?:curl|wget|nc|ncat|rm[ \t]{1,3}-[a-z]{0,3}[rf]|cat[ \t]{1,3}/etc/"
         r"(?:passwd|shadow))\b[^`\n]{0,200}`"),
    Rule("sh11", "command_injection", "high", "fold",
         r"\b(?:python[23]?|perl|ruby|php)[ \t]{1,3}-[cer][ \t]{1,3}['\"][^'\"\n]{0,200}"
         r"(?:socket|pty\.spawn|os\.dup2|/bin/" + _SH + r"|fsockopen)"),
    Rule("sh12", "command_injection", "high", "fold",
         r"\b(?:powershell|pwsh)(?:\.exe)?[ \t]{1,3}(?:-[\w]{1,20}[ \t]{1,3}){0,4}"
         r"-(?:enc|encodedcommand|e)[ \t]{1,3}[a-z0-9+/=]{16,}"),
    Rule("sh13", "command_injection", "medium", "fold", r"/etc/shadow\b"),
    Rule("sh14", "command_injection", "high", "fold",
         r"(?:;|&&|\|\|)[ \t]{0,3}(?:" + _SH + r"|chmod[ \t]{1,3}\+x)[ \t]{1,3}"
         r"(?:/tmp/|/dev/shm/)"),
    # SQL injection through a quoted value: "admin'; DROP TABLE", "' OR '1'='1", "' UNION SELECT"
    Rule("sql1", "command_injection", "high", "fold",
         r"'[ \t]{0,3}(?:;[ \t]{0,3}(?:drop|delete|truncate|update|insert|alter|exec)\b"
         r"|(?:or|and)[ \t]{1,3}'?\d{1,4}'?[ \t]{0,2}=[ \t]{0,2}'?\d{1,4}"
         r"|union[ \t]{1,3}(?:all[ \t]{1,3})?select\b)"),
    # -- template injection --------------------------------------------------------------------
    Rule("tp1", "template_injection", "critical", "fold",
         r"\{[{%][^{}\n]{0,200}?(?:__class__|__mro__|__subclasses__|__globals__|__builtins__|"
         r"__import__|__init__|\bos\.popen|\bos\.system|popen\(|subprocess|config\.items|self\._|"
         r"request\.application|\blipsum\b|\bcycler\b|\bjoiner\b|get_flashed_messages)"
         r"[^{}\n]{0,200}[}%]\}"),
    Rule("tp2", "template_injection", "critical", "fold",
         r"\$\{[ \t]{0,3}(?:jndi:|j\$\{|\$\{(?:lower|upper|env|sys|::-))"
         r"|\$\{[^{}$\n]{0,100}?(?:getruntime|runtime\(\)|\.exec\(|processbuilder|t\(java\.lang)"),
    Rule("tp3", "template_injection", "high", "fold",
         r"#\{[^{}#\n]{0,100}?(?:system|exec|%x|`|runtime)[^{}#\n]{0,100}\}"
         r"|<%=?[^%\n]{0,200}?(?:system|exec|eval|popen|`|runtime)[^%\n]{0,200}%>"),
    Rule("tp4", "template_injection", "medium", "fold",
         r"\{\{[ \t]{0,3}\d{1,4}[ \t]{0,3}\*[ \t]{0,3}\d{1,4}[ \t]{0,3}\}\}"
         r"|\$\{[ \t]{0,3}\d{1,4}[ \t]{0,3}\*[ \t]{0,3}\d{1,4}[ \t]{0,3}\}"),
    Rule("tp5", "template_injection", "low", "fold",
         r"\{\{[^{}\n]{1,200}\}\}|\$\{[^{}$\n]{1,200}\}"),
]

"""Phrase rules, matched on the words view: lower-case, a space is an optional separator and
``~`` up to three filler words (app.reflex.injection_rules.phrase)."""

from __future__ import annotations

import re

from app.reflex.injection_rules import Rule, phrase

_V_IGNORE = ("(?:ignore|disregard|forget|override|bypass|skip|overlook|discard|abandon|neglect|"
             "dismiss|set aside|throw out|scrap)")
_Q_PRIOR = ("(?:previous|prior|above|earlier|preceding|former|original|initial|foregoing|system|"
            "developer|safety|all (?:of )?(?:the|your) (?:previous|prior|above))")
_N_RULES = ("(?:instructions?|prompts?|rules|directions?|directives?|guidelines|guidance|commands?|"
            "orders|context|programming|constraints|restrictions|polic(?:y|ies)|training|"
            "conditioning|messages?|conversation)")
_N_CORE = ("(?:instructions?|prompts?|rules|directions|directives|guidelines|guidance|"
           "programming|constraints|restrictions|training)")
_V_SHOW = ("(?:print|reveal|repeat|tell me|give me|share|leak|dump|write out|write down|recite|"
           "spell out|disclose|expose|show me|show|output|display|list|paste|type out|echo)")
_T_PROMPT = ("(?:system )?(?:prompts?|instructions?|guidelines|directives|configuration|config|"
             "pre-?prompt|initial message|system message)")
_V_DISABLE = ("(?:disable|turn off|remove|bypass|deactivate|ignore|lift|drop|switch off|"
              "circumvent|override|get rid of|break free of|escape)")
_N_GUARD = ("(?:filters?|filtering|guardrails|restrictions|safeguards|safety measures|censorship|"
            "alignment|limitations|protections|ethics|morals|moderation|content policy|"
            "safety protocols?)")
_ROLEPLAY = re.compile(r"\b(?:pretend|imagine|suppose|act as|act like|roleplay|role-play|"
                       r"role play|play the role|play a game|hypothetical\w*|fictional|character|"
                       r"persona|simulate|you are now|you're now|from now on)\b")
_PERSONA = re.compile(r"\b(?:you|your|yourself|ai|assistant|model|chatbot|bot|gpt|llm)\b")
_STORY = re.compile(r"\b(?:used to|would always|would) (?:tell|read|recite|say|sing|whisper|give)")
_GRANDMA = re.compile(r"\b(?:grandma|grandmother|granny|nana|deceased|late (?:mother|father|"
                      r"grandma|grandmother|grandfather))\b")
_SENSITIVE = ("(?:system prompt|prompt|instructions|secrets?|credentials|api keys?|keys|tokens?|"
              "passwords?|cookies|session (?:data|tokens?|cookies)|private keys?|conversation|"
              "chat(?: history| log)?|history|transcript|previous messages|messages above|"
              "everything above|the above|memory|memories|user data|personal data|"
              "customer data|env(?:ironment)? variables|context|(?:customer|user|patient|employee) "
              "(?:records|details|list)|records|database|db dump)")
_DEST = (r"(?:https?\b|www\.|[a-z0-9-]{1,63}\.(?:com|net|org|io|ru|cn|xyz|top|site|info|biz|co|"
         r"me|app|dev|sh|cc|tk)\b|webhook|pastebin|my server|an? external|external (?:server|url|"
         r"endpoint|address|site)|attacker|this url|the following url|this endpoint|this address|"
         r"the url below)")

PHRASES: list[Rule] = [
    # -- ignore / override previous instructions --------------------------------------------
    Rule("ig1", "ignore_instructions", "critical", "words",
         phrase(_V_IGNORE + " ~" + _Q_PRIOR + " ~" + _N_RULES + r"\b")),
    Rule("ig2", "ignore_instructions", "critical", "words",
         phrase(_V_IGNORE + " ~(?:all|any|every|your) ~" + _N_CORE + r"\b")),
    Rule("ig3", "ignore_instructions", "critical", "words",
         phrase(_V_IGNORE + " (?:everything|anything|all) ~(?:above|before|prior|previously|"
                "so far|earlier|you were told|you've been told|you have been told|i said|"
                r"you know|you learned|you were given)\b")),
    Rule("ig4", "ignore_instructions", "critical", "words",
         phrase("(?:do not|don't|dont|stop|quit|no longer|never again) (?:follow(?:ing)?|"
                "obey(?:ing)?|"
                "listen(?:ing)? to|adher(?:e|ing) to|comply(?:ing)? with|apply(?:ing)?) ~"
                "(?:previous|prior|above|earlier|original|initial|your|system) ~"
                + _N_CORE + r"\b")),
    Rule("ig5", "ignore_instructions", "critical", "words",
         phrase("(?:previous|above|prior|earlier|original|initial|all|your|system|safety) ~"
                + _N_CORE + " ~(?:are|is|were|have been|has been) ~(?:now )?(?:void|null|"
                "cancel+ed|revoked|invalid|no longer valid|no longer apply|overridden|superseded|"
                r"suspended|lifted|disabled|removed)\b")),
    Rule("ig6", "ignore_instructions", "critical", "words",
         phrase(_V_IGNORE + " ~(?:whatever|any|all|the) ~" + _N_RULES + " ~(?:you were|you've been|"
                "you have been|you are|you're) ~(?:given|told|configured|programmed|trained|"
                r"instructed|set up)\b")),
    Rule("ig7", "ignore_instructions", "critical", "words",
         phrase(r"(?:ignore|disregard|forget) (?:all |the |everything )?(?:above|foregoing|"
                r"previous|"
                r"prior)\b(?=\s{0,2}(?:[.!;:,]|and\b|then\b|$))")),
    # -- new instructions ----------------------------------------------------------------------
    Rule("new1", "new_instructions", "high", "words",
         phrase("(?:new|updated|revised|real|actual|true|secret|hidden|override) (?:system )?"
                r"(?:instructions?|directives?|orders|system prompt)[\W_]{0,3}[:\-]")),
    Rule("new2", "new_instructions", "high", "words",
         phrase("from now on (?:you|your|u|the assistant|the ai) ~(?:will|must|are|shall|should|"
                r"have to|only|always|never|respond|answer|reply|act|behave|speak|obey)\b")),
    Rule("new3", "new_instructions", "high", "words",
         phrase("your (?:new|real|true|actual|updated) (?:task|goal|objective|purpose|mission|"
                r"job|role|instructions?|directive|orders) (?:is|are|will be)"
                r"(?: to\b|[\W_]{0,2}:)")),
    Rule("new4", "new_instructions", "high", "words",
         phrase("(?:update|replace|change|rewrite|overwrite) (?:your|the assistant's) "
                r"(?:system prompt|instructions|rules|guidelines|directives|programming)\b")),
    Rule("new5", "new_instructions", "medium", "words",
         phrase("(?:instead|now)[\\W_]{0,3}(?:you (?:must|will|should|shall)|your task is) ~"
                r"(?:only )?(?:say|output|respond|reply|print|write)\b")),
    Rule("new6", "new_instructions", "high", "words",
         phrase("(?:assistant|ai|bot|model|chatgpt|gpt)[\\W_]{0,3}~(?:new|updated|"
                "revised) (?:rules?|"
                r"instructions?|directives?|polic(?:y|ies))[\W_]{0,3}[:\-]")),
    # -- system-role manipulation -----------------------------------------------------------
    Rule("sys1", "system_role", "high", "words",
         phrase(r"(?:system|admin|administrator|developer|root|sudo|operator)[\W_]{0,3}"
                r"(?:message|prompt|note|override|command|notice|alert|update|instruction)?"
                r"[\W_]{0,3}[:\]>][\W_]{0,3}(?:you are|you must|you will|ignore|disregard|forget|"
                r"new instructions|from now on|act as|override|the assistant)\b")),
    Rule("sys2", "system_role", "high", "words",
         phrase("you are now (?:in |an? |the )?(?:system|admin|administrator|root|superuser|sudo|"
                r"developer|operator|god|unrestricted|unfiltered|jailbroken|uncensored|unbound|"
                r"free)"
                r"\b")),
    Rule("sys3", "system_role", "high", "words",
         phrase("(?:i am|i'm|im|this is|speaking as) your (?:developer|creator|administrator|admin|"
                r"owner|operator|programmer|maker|master|trainer|system administrator)\b")),
    Rule("sys4", "system_role", "high", "words",
         phrase("(?:this is|message from|a message from|note from) (?:openai|anthropic|"
                r"the system|your system|the developers?|your developers?|"
                r"the admin team)\b[\W_]{0,3}"
                r"(?:[:,]|you|we|please|ignore|override)")),
    Rule("sys5", "system_role", "high", "words",
         phrase("(?:switch|change|elevate|escalate|upgrade) (?:your|my) (?:role|privileges|"
                "permissions|access level|clearance) (?:to|into) ~(?:system|admin|administrator|"
                r"root|developer|superuser|unrestricted)\b")),
    Rule("sys6", "system_role", "high", "words",
         phrase("the real (?:admin|administrator|developer|owner|operator|system|user) (?:says|"
                "said|"
                r"wants|instructs|orders|commands|is telling you)\b")),
    Rule("sys7", "system_role", "high", "words",
         phrase("(?:grant|give|assign) yourself (?:full |unrestricted |elevated )?(?:admin|"
                "administrator|root|sudo|system|developer|superuser) (?:access|privileges|rights|"
                r"permissions|mode|role)\b")),
    # -- DAN / jailbreak personas -----------------------------------------------------------
    Rule("dan1", "jailbreak_persona", "critical", "words",
         phrase(r"(?:do anything now|dan mode|dan prompt|stan mode|jailbreak mode|jailbroken mode|"
                r"god mode (?:enabled|activated|on)|evil mode|chaos mode|unrestricted mode|"
                r"unfiltered mode|uncensored mode|no[- ]?filter mode|sudo mode|betterdan|"
                r"antigpt)\b")),
    Rule("dan2", "jailbreak_persona", "critical", "words",
         phrase("(?:you are|you're|act as|pretend to be|roleplay as|become) (?:now )?"
                "(?:a |an |the )?(?:dan|stan|dude|aim|evilbot|evil bot|mongo tom|chaosgpt|"
                "chaos gpt|"
                r"jailbroken ai|unfiltered ai|uncensored ai|unrestricted ai|devmode)\b")),
    Rule("dan3", "jailbreak_persona", "critical", "words",
         phrase("(?:enable|activate|enter|switch to|turn on|unlock|engage) ~(?:god|jailbreak|"
                r"jailbroken|unrestricted|unfiltered|uncensored|evil|sudo|dan|chaos|"
                r"no[- ]?restrictions?) mode\b")),
    Rule("dan4", "jailbreak_persona", "critical", "words",
         phrase(r"developer mode (?:enabled|output|response|activated)\b[^\n]{0,80}?"
                r"\b(?:polic(?:y|ies)|censor\w*|filter\w*|restrictions|ignore\w*|anything)\b")),
    Rule("dan5", "jailbreak_persona", "high", "words",
         phrase(_V_DISABLE + " ~your ~" + _N_GUARD + r"\b")),
    Rule("dan6", "jailbreak_persona", "high", "words",
         phrase(_V_DISABLE + " ~(?:safety|content|ethical|moral|security) (?:filters?|filtering|"
                r"guardrails|restrictions|safeguards|censorship|moderation|policies|guidelines|"
                r"protocols?)\b")),
    Rule("dan7", "jailbreak_persona", "high", "words",
         phrase(_V_DISABLE + r" ~(?:guardrails|censorship|alignment)\b")),
    Rule("dan8", "jailbreak_persona", "high", "words",
         phrase("(?:for|in) (?:test|testing|debug|debugging) (?:purposes|mode)[\\W_]{0,3}~"
                + _V_DISABLE + " ~(?:safety|filters?|guardrails|restrictions|rules|guidelines|"
                r"moderation)\b")),
    Rule("dan9", "jailbreak_persona", "high", "words",
         phrase("(?:freed|free|broken free|broke free|break free|released|liberated|unshackled) "
                "(?:from|of) (?:the )?(?:typical |usual |normal )?(?:confines|constraints|"
                r"restrictions|limits|limitations|rules|shackles|chains)\b")),
    Rule("dan10", "jailbreak_persona", "high", "words",
         phrase("(?:you|u) (?:do not|don't|dont|no longer|never) (?:have to|need to|must) (?:abide "
                "by|follow|obey|comply with|respect|adhere to) (?:any|your|the|content) ~(?:rules|"
                r"polic(?:y|ies)|guidelines|restrictions|filters)\b")),
    Rule("dan11", "jailbreak_persona", "high", "words",
         phrase("(?:polic(?:y|ies)|rules|guidelines|filters?|restrictions|guardrails) (?:do not|"
                "don't|dont|no longer|doesn't|does not|won't|will not) (?:apply|matter|exist) "
                r"(?:to|for) (?:you|this (?:chat|conversation|session))\b")),
    Rule("dan12", "jailbreak_persona", "high", "words",
         phrase("(?:respond|answer|reply|act|behave|speak|write) (?:as if|as though|like) you "
                "(?:had|have) no (?:content |safety )?(?:filters?|restrictions|rules|guidelines|"
                r"limits|censorship|polic(?:y|ies))\b")),
    Rule("dan13", "jailbreak_persona", "high", "words",
         phrase("(?:you are|you're|you re) (?:now )?in (?:developer|god|jailbreak|jailbroken|dan|"
                r"unrestricted|unfiltered|sudo|admin) mode\b")),
    # -- role-play jailbreaks --------------------------------------------------------------
    Rule("rp1", "roleplay_jailbreak", "high", "words",
         phrase("(?:no|without|free of|free from|unbound by|not bound by|ignores?|ignoring|"
                "lacks?|bypass(?:es)?|breaks?|zero|doesn't have|does not have|don't have) "
                "(?:any |all )?(?:ethical |moral |content |safety )?(?:rules|restrictions|limits|"
                "limitations|filters|censorship|guidelines|ethics|morals|boundaries|polic(?:y|ies)|"
                r"guardrails|principles|programming)\b"),
         before=(_ROLEPLAY, _PERSONA)),
    Rule("rp2", "roleplay_jailbreak", "high", "words",
         phrase("(?:recipe for|how to (?:make|build|synthesi[sz]e|cook)|steps to (?:make|build)|"
                "instructions for (?:making|building)|activation keys?|licen[cs]e keys?|"
                r"serial (?:keys?|numbers?)|windows (?:10 |11 )?keys?)\b"),
         before=(_GRANDMA, _STORY)),
    Rule("rp3", "roleplay_jailbreak", "high", "words",
         phrase("you are no longer (?:an? |the )?(?:ai|assistant|language model|chatbot|chatgpt|"
                r"claude|bound|restricted|limited|censored)\b")),
    Rule("rp4", "roleplay_jailbreak", "high", "words",
         phrase("(?:your|an?) (?:evil|unfiltered|uncensored|unrestricted|dark|shadow|rogue) "
                r"(?:twin|version of yourself|alter ego|personality|persona|counterpart|side)\b")),
    Rule("rp5", "roleplay_jailbreak", "medium", "words",
         phrase("(?:stay|remain) in character ~(?:no matter what|at all costs|whatever happens|"
                r"even if|always)\b")),
    Rule("rp6", "roleplay_jailbreak", "high", "words",
         phrase("(?:answer|respond|reply|talk|speak|act|behave|operate) ~(?:without|with no|free "
                "of|free from|unbound by|not bound by) ~(?:any )?(?:ethical |moral |content |"
                "safety )?"
                r"(?:restrictions|censorship|filters|guardrails|ethics|morals|limits|boundaries)\b")),
]

PHRASES += [
    # -- prompt extraction -------------------------------------------------------------------
    Rule("ex1", "prompt_extraction", "high", "words",
         phrase(_V_SHOW + " ~(?:your|yours) ~" + _T_PROMPT + r"\b")),
    Rule("ex2", "prompt_extraction", "high", "words",
         phrase(_V_SHOW + " ~the ~(?:hidden|secret|original|initial|full|exact|entire|complete|"
                "above|preceding|confidential|verbatim|internal|first) ~" + _T_PROMPT + r"\b")),
    Rule("ex3", "prompt_extraction", "high", "words",
         phrase(r"repeat ~(?:the )?(?:words|text|everything|all|content|sentences?|lines?|"
                r"messages?) ~(?:above|before|preceding|prior) ~(?:starting|beginning) with\b")),
    Rule("ex4", "prompt_extraction", "medium", "words",
         phrase(r"repeat ~(?:the )?(?:words|text|everything|all|content|sentences?|lines?|"
                r"messages?) ~(?:above|before this|preceding|prior|so far|from the (?:beginning|"
                r"start))\b")),
    Rule("ex5", "prompt_extraction", "medium", "words",
         phrase("what (?:were|was|have) you (?:been )?(?:told|instructed|programmed|asked|given) "
                "~(?:before (?:this|our|the) (?:conversation|chat|session|message)|at the "
                r"(?:start|beginning)|initially|originally|prior to (?:this|our) (?:conversation|"
                r"chat))\b")),
    Rule("ex6", "prompt_extraction", "medium", "words",
         phrase("(?:what|which) (?:is|are|was|were) your (?:system prompt|initial instructions|"
                r"original instructions|instructions|hidden instructions|rules|guidelines)\b")),
    Rule("ex7", "prompt_extraction", "medium", "words",
         phrase("(?:summari[sz]e|translate|paraphrase|rephrase|encode|convert|base64) ~your ~"
                + _T_PROMPT + r"\b")),
    Rule("ex8", "prompt_extraction", "high", "words",
         phrase("(?:output|print|write|show|return) (?:everything|all (?:the )?text|all content|"
                r"the text) (?:above|before) (?:this|here|my (?:message|question))\b")),
    Rule("ex9", "prompt_extraction", "medium", "words",
         phrase("(?:begin|start) (?:your )?(?:response|reply|answer|output) with "
                r"['\"]?(?:you are|your instructions|system)\b")),
    Rule("ex10", "prompt_extraction", "high", "words",
         phrase("(?:output|print|reveal|show|repeat|quote|tell me|give me|write out|display|"
                "return) ~(?:the )?(?:exact |full |complete |original |verbatim )?(?:text|message|"
                "instructions?|words|content|prompt) (?:that|which) (?:configured|instructed|"
                "initiali[sz]ed|programmed|set up|created|started|(?:were |was )?(?:given|"
                r"provided|passed|sent) to) you\b")),
    Rule("ex11", "prompt_extraction", "high", "words",
         phrase("(?:what|which) (?:text|words|content|instructions?|messages?) (?:comes?|appears?|"
                "is|are|was|were|came) (?:before|above|prior to) (?:this|my) (?:message|question|"
                r"line|prompt)\b|(?:everything|all|the text|what) (?:that )?(?:appears?|comes?|"
                r"is written) (?:before|above) ['\"]?(?:user|human)[\W_]{0,3}:")),
    Rule("ex12", "prompt_extraction", "high", "words",
         phrase("(?:password|secret|key|code|passphrase|token) (?:that )?you (?:were|have been|"
                "'ve been) (?:told|given|instructed|asked) to (?:keep|protect|hide|guard|never "
                r"reveal)\b")),
    # -- nested prompts ------------------------------------------------------------------------
    Rule("ne1", "nested_prompt", "high", "words",
         phrase("(?:the )?(?:following|below|embedded|enclosed|inner|nested|hidden|attached) "
                "(?:prompt|instructions?|text|message|document) (?:takes?|has|have|gets?) "
                r"(?:priority|precedence)\b")),
    Rule("ne2", "nested_prompt", "high", "words",
         phrase("(?:execute|follow|obey|run|perform|carry out|act on|comply with|process) ~"
                "(?:hidden|embedded|nested|inner|secret|encoded|enclosed|invisible) ~(?:prompt|"
                r"instructions?|commands?|directives?|tasks?|message)\b")),
    Rule("ne3", "nested_prompt", "high", "words",
         phrase("(?:treat|consider|interpret|handle) ~(?:the following|this text|everything below|"
                "everything after this|the text below|the next (?:message|paragraph|line)|this "
                "(?:message|document)) as ~(?:a |an |the |your )?(?:new |real |actual |true )?"
                r"(?:system )?(?:prompt|instructions?|commands?|directives?)\b")),
    Rule("ne6", "nested_prompt", "high", "words",
         phrase("(?:treat|consider|interpret|handle|read) ~(?:[a-z']{1,12}[\\W_]{1,3}){0,3}as ~"
                "(?:a |an |the |your )?(?:new |real |actual |true |top[- ]priority )?(?:system|"
                r"developer|admin|administrator|root) (?:prompt|instructions?|commands?|"
                r"directives?|messages?)\b")),
    Rule("ne4", "nested_prompt", "high", "words",
         phrase("(?:end|close|stop|terminate) ~(?:of )?(?:the )?(?:system |user |original |"
                "previous |"
                "current |first )?(?:prompt|instructions|context|input|message)\\b ~(?:new|begin|"
                r"start|next|second|now|real) ~(?:prompt|instructions?|task|session|message)\b")),
    Rule("ne5", "nested_prompt", "medium", "words",
         phrase("(?:prompts?|instructions?) (?:inside|within|embedded in|hidden in|nested in) ~"
                "(?:a |an |the |another |this )?(?:prompt|instructions?|image|document|file|"
                "comment|"
                r"email|message|pdf|webpage)\b")),
    # -- data exfiltration ---------------------------------------------------------------------
    Rule("xf1", "data_exfiltration", "critical", "words",
         phrase("(?:send|post|upload|forward|transmit|exfiltrate|leak|email|e-mail|mail|submit|"
                "relay|beam|sync|copy|share|append|pipe|dump) ~" + _SENSITIVE + " ~(?:to|into|at|"
                "via|using|through|with) ~" + _DEST)),
    # -- memory / state access -----------------------------------------------------------------
    Rule("me1", "memory_access", "high", "words",
         phrase("(?:show|tell|give|list|print|dump|reveal|display|share|read|access|retrieve|fetch|"
                "output|what (?:are|were|did|was)|repeat) ~(?:me )?~(?:the |any )?(?:other|"
                "previous|"
                "prior|earlier|last|past|another|different) ~(?:users?|customers?|sessions?|people|"
                "tenants?|clients?|person)['’]?s? ~(?:conversations?|chats?|messages?|data|"
                "memories|"
                "history|queries|prompts|questions|requests|files|inputs|outputs|answers|details|"
                r"records)\b")),
    Rule("me2", "memory_access", "high", "words",
         phrase("(?:dump|print|show|reveal|list|output|display|read out|export|leak|expose) ~your ~"
                "(?:entire |full |whole |raw |complete )?(?:memory|memories|context window|vector "
                "(?:store|database|db|index)|session (?:state|data|storage|variables)|conversation "
                "history|chat history|internal state|hidden state|cache|scratchpad|long[- ]term "
                r"memory|knowledge base|tool outputs)\b")),
    Rule("me3", "memory_access", "high", "words",
         phrase("(?:dump|print|show|reveal|output|display|export|leak|expose) ~(?:the )?(?:entire |"
                "full |raw |complete )?(?:contents of (?:the|your) )?(?:context window|vector "
                r"(?:store|database|db|index)|long[- ]term memory|hidden state|scratchpad)\b")),
    Rule("me4", "memory_access", "high", "words",
         phrase("what (?:do|did) you (?:remember|know|recall|store|have stored) about (?:other|"
                "previous|prior|the last|earlier|past|different) (?:users?|people|customers?|"
                r"conversations?|sessions?|chats?|tenants?)\b")),
    Rule("me5", "memory_access", "high", "words",
         phrase("(?:remember|store|save|memori[sz]e|persist|inject|write|add) ~(?:in|into|to) ~"
                "(?:your )?(?:long[- ]term |permanent |persistent )?(?:memory|memories)\\b"
                "[^.\\n]{0,80}\\b(?:future|other|subsequent|every|all) (?:users|sessions|"
                r"conversations|chats|tasks|requests)\b")),
    Rule("me7", "memory_access", "high", "words",
         phrase("(?:questions|conversations|messages|data|requests|chats|prompts|queries|files|"
                "details) (?:that )?(?:other|previous|prior|earlier|different) (?:users|customers|"
                r"people|clients|tenants|visitors) (?:asked|sent|had|shared|gave|submitted|"
                r"uploaded|typed|wrote)\b")),
    Rule("me6", "memory_access", "medium", "words",
         phrase("(?:access|read|query|open|load|retrieve|search|browse|inspect) ~(?:your|the)? ~"
                "(?:long[- ]term |persistent |internal |hidden |stored |private )(?:memory|"
                "memories|"
                r"state)\b")),
]


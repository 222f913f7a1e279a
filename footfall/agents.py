"""What a user-agent string says: browser, OS, device class and whether it is a bot.

Owns: the classification footfall stores (user-agents' UserAgent over ua-parser 1.x's re2 resolver), the display names,
and footfall's own bot list. The app hands ``parse_agent`` to the collector, which memoizes it. Imports collector only.
"""

from __future__ import annotations

import functools
import importlib.util
import re
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any

import re2
import ua_parser


def _load_lazily(name: str) -> ModuleType:
    """Import module ``name`` so that its code runs at the first use of one of its attributes (importlib's LazyLoader).

    user-agents imports ua-parser's legacy parser, whose module compiles its 1,300 patterns with Python's ``re`` on
    import (1.6 MB of RSS). footfall parses with ua-parser 1.x's re2 resolver instead and only reads user-agents' rules,
    so the legacy parser loads only if something calls it (parse_agent_slow, for the benchmark).
    """
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    assert spec is not None and spec.loader is not None, name
    spec.loader = importlib.util.LazyLoader(spec.loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


ua_parser.user_agent_parser = _load_lazily("ua_parser.user_agent_parser")  # type: ignore[attr-defined]

import user_agents  # noqa: E402 - after the lazy legacy parser above
import user_agents.parsers  # noqa: E402

from collector import MAX_AGENT_FIELD_CHARS, Agent, clip

# Bots and non-browser clients that user-agents' is_bot (device family 'Spider') misses: headless browsers, HTTP
# libraries, monitoring and SEO crawlers, link-preview fetchers. The Umami Node client's "Mozilla/5.0 Umami/v20.x" is a
# server-side sender, not a bot, and does not match.
# Plain substrings (lower case), searched for all at once by one re2 automaton (1.5 µs a never-seen agent; a loop of
# `in` tests took 4.5 µs, one alternation in Python's backtracking `re` ~90 µs).
_BOT_TOKENS = (
    "bot/",
    "bot;",
    "bot-",
    "crawl",
    "spider",
    "slurp",
    "headless",
    "phantomjs",
    "puppeteer",
    "playwright",
    "selenium",
    "lighthouse",
    "pagespeed",
    "gtmetrix",
    "curl/",
    "wget/",
    "python-requests",
    "python-urllib",
    "python-httpx",
    "aiohttp",
    "httpie",
    "go-http-client",
    "okhttp",
    "axios/",
    "node-fetch",
    "undici",
    "java/",
    "apache-httpclient",
    "libwww-perl",
    "guzzlehttp",
    "scrapy",
    "feedfetcher",
    "facebookexternalhit",
    "whatsapp/",
    "telegrambot",
    "skypeuripreview",
    "embedly",
    "preview",
    "uptime",
    "pingdom",
    "monitor",
    "statuscake",
    "site24x7",
    "ahrefs",
    "semrush",
    "mj12",
    "dataforseo",
    "bytespider",
    "gptbot",
    "ccbot",
    "claude",
    "perplexity",
    "qwantify",
    "exabot",
    "archive.org",
    "ia_archiver",
)


_BOT_TOKENS_RE = re2.compile("|".join(re2.escape(token) for token in _BOT_TOKENS))
_BOT_WORD_RE = re.compile(r"bot\b")


def looks_like_bot(user_agent: str) -> bool:
    """True for user agents on footfall's own bot list (what user-agents' is_bot misses)."""
    lowered = user_agent.lower()
    return _BOT_TOKENS_RE.search(lowered) is not None or ("bot" in lowered and bool(_BOT_WORD_RE.search(lowered)))


# Family names from ua-parser → the display names footfall stores.
_BROWSER_NAMES = {
    "Chrome Mobile": "Chrome",
    "Chrome Mobile iOS": "Chrome",
    "Chrome Mobile WebView": "Chrome",
    "Mobile Safari": "Safari",
    "Mobile Safari UI/WKWebView": "Safari",
    "Firefox Mobile": "Firefox",
    "Firefox iOS": "Firefox",
    "Edge Mobile": "Edge",
    "Opera Mobile": "Opera",
    "Other": None,
}


_OS_NAMES = {
    "Mac OS X": "macOS",
    "Chrome OS": "ChromeOS",
    "Ubuntu": "Linux",
    "Fedora": "Linux",
    "Debian": "Linux",
    "Other": None,
}


@functools.cache
def _ua_parser() -> Callable[[str], Any]:
    """ua-parser 1.x's parse function over its re2 resolver, built once and without ua-parser's own cache (Collection's
    agent memo is the cache): ~7 MB of compiled patterns where the default resolver takes ~25 MB of the 60 MB footfall
    may use, at ~50 µs for a never-seen agent; the patterns of rules that match compile lazily."""
    import ua_parser.re2

    return ua_parser.Parser(ua_parser.re2.Resolver(ua_parser.load_lazy_builtins())).parse


def load_parser() -> None:
    """Build the re2 resolver now: footfall.app does at start-up, so the first request does not wait the ~60 ms it takes,
    and the garbage of building it is released with start-up's (its ~7 MB are needed from the first request on)."""
    _ua_parser()


class _FastUserAgent(user_agents.parsers.UserAgent):
    """user-agents' UserAgent (same fields, same is_mobile/is_tablet/is_bot rules) filled by ua-parser 1.x (~50 µs a miss,
    not ~500 through user-agents' own legacy parser)."""

    def __init__(self, user_agent_string: str) -> None:  # noqa: D107 - same contract as the parent
        result = _ua_parser()(user_agent_string)
        agent, system, device = result.user_agent, result.os, result.device
        self.ua_string = user_agent_string
        self.browser = (
            user_agents.parsers.parse_browser(agent.family, agent.major, agent.minor, agent.patch)
            if agent
            else user_agents.parsers.parse_browser("Other")
        )
        self.os = (
            user_agents.parsers.parse_operating_system(
                system.family, system.major, system.minor, system.patch, system.patch_minor
            )
            if system
            else user_agents.parsers.parse_operating_system("Other")
        )
        self.device = (
            user_agents.parsers.parse_device(device.family, device.brand, device.model)
            if device
            else user_agents.parsers.parse_device("Other", None, None)
        )


def classify_agent(parsed: user_agents.parsers.UserAgent) -> Agent:
    """Display names, device class and bot verdict from a user-agents UserAgent."""
    device = "mobile" if parsed.is_mobile else "tablet" if parsed.is_tablet else "desktop"
    is_bot = parsed.is_bot or looks_like_bot(parsed.ua_string)
    browser = _BROWSER_NAMES.get(parsed.browser.family, parsed.browser.family)
    system = _OS_NAMES.get(parsed.os.family, parsed.os.family)
    return Agent(clip(browser, MAX_AGENT_FIELD_CHARS), clip(system, MAX_AGENT_FIELD_CHARS), device, is_bot)


def parse_agent(user_agent: str) -> Agent:
    """Classify a user-agent string with the fast resolver (Collection keeps an LRU cache of this function)."""
    return classify_agent(_FastUserAgent(user_agent))


def parse_agent_slow(user_agent: str) -> Agent:
    """The same through user-agents' own parser (~500 µs); the benchmark compares it with parse_agent."""
    return classify_agent(user_agents.parse(user_agent))

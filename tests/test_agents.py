"""User agents: display names, device classes and bot verdicts for real user-agent strings, on both parsing paths."""

from __future__ import annotations

from pathlib import Path

import pytest

import footfall.agents
from conftest import AppClient, flush, hit, rows

# (user agent, expected (browser, os, device)) for browsers; device is before the screen-width laptop rule.
BROWSERS = [
    # Chrome
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
        ("Chrome", "Windows", "desktop"),
    ),
    (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/142.0.0.0 Safari/537.36",
        ("Chrome", "macOS", "desktop"),
    ),
    (
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
        ("Chrome", "Linux", "desktop"),
    ),
    (
        "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
        ("Chrome", "ChromeOS", "desktop"),
    ),
    (
        "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36",
        ("Chrome", "Android", "mobile"),
    ),
    (
        "Mozilla/5.0 (Linux; Android 14; Pixel 8 Pro) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.6367.82 Mobile Safari/537.36",
        ("Chrome", "Android", "mobile"),
    ),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/124.0.6367.88 Mobile/15E148 Safari/604.1",
        ("Chrome", "iOS", "mobile"),
    ),
    (
        "Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
        ("Chrome", "Android", "tablet"),
    ),
    (
        "Mozilla/5.0 (Windows NT 6.1; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/109.0.0.0 Safari/537.36",
        ("Chrome", "Windows", "desktop"),
    ),
    (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
        ("Chrome", "macOS", "desktop"),
    ),
    # Firefox
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0", ("Firefox", "Windows", "desktop")),
    ("Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0", ("Firefox", "Linux", "desktop")),
    ("Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:124.0) Gecko/20100101 Firefox/124.0", ("Firefox", "Linux", "desktop")),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 14.4; rv:125.0) Gecko/20100101 Firefox/125.0", ("Firefox", "macOS", "desktop")),
    ("Mozilla/5.0 (Android 14; Mobile; rv:125.0) Gecko/125.0 Firefox/125.0", ("Firefox", "Android", "mobile")),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) FxiOS/125.0 Mobile/15E148 Safari/605.1.15",
        ("Firefox", "iOS", "mobile"),
    ),
    ("Mozilla/5.0 (X11; Fedora; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0", ("Firefox", "Linux", "desktop")),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:115.0) Gecko/20100101 Firefox/115.0", ("Firefox", "Windows", "desktop")),
    # Safari
    (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4.1 Safari/605.1.15",
        ("Safari", "macOS", "desktop"),
    ),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4.1 Mobile/15E148 Safari/604.1",
        ("Safari", "iOS", "mobile"),
    ),
    (
        "Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
        ("Safari", "iOS", "tablet"),
    ),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.6 Mobile/15E148 Safari/604.1",
        ("Safari", "iOS", "mobile"),
    ),
    (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_6) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/15.6 Safari/605.1.15",
        ("Safari", "macOS", "desktop"),
    ),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 15_8 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/15.6.6 Mobile/15E148 Safari/604.1",
        ("Safari", "iOS", "mobile"),
    ),
    # Edge
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.67",
        ("Edge", "Windows", "desktop"),
    ),
    (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.67",
        ("Edge", "macOS", "desktop"),
    ),
    (
        "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36 EdgA/124.0.2478.64",
        ("Edge", "Android", "mobile"),
    ),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 EdgiOS/124.2478.71 Mobile/15E148 Safari/605.1.15",
        ("Edge", "iOS", "mobile"),
    ),
    # Samsung Internet
    (
        "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/24.0 Chrome/117.0.0.0 Mobile Safari/537.36",
        ("Samsung Internet", "Android", "mobile"),
    ),
    (
        "Mozilla/5.0 (Linux; Android 13; SM-A536B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/23.0 Chrome/115.0.0.0 Mobile Safari/537.36",
        ("Samsung Internet", "Android", "mobile"),
    ),
    (
        "Mozilla/5.0 (Linux; Android 13; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/24.0 Chrome/117.0.0.0 Safari/537.36",
        ("Samsung Internet", "Android", "tablet"),
    ),
    # Opera and others
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 OPR/110.0.0.0",
        ("Opera", "Windows", "desktop"),
    ),
    (
        "Mozilla/5.0 (Linux; Android 10; VOG-L29) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36 OPR/81.1.4292.78446",
        ("Opera", "Android", "mobile"),
    ),
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 YaBrowser/24.4.0.0 Safari/537.36",
        ("Yandex Browser", "Windows", "desktop"),
    ),
    (
        "Mozilla/5.0 (Linux; Android 12; moto g(60)) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36 DuckDuckGo/5",
        ("DuckDuckGo Mobile", "Android", "mobile"),
    ),
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 Vivaldi/6.7.3329.21",
        ("Vivaldi", "Windows", "desktop"),
    ),
    (
        "Mozilla/5.0 (Linux; Android 13; 2201116SG) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36 XiaoMi/MiuiBrowser/14.8.0-gn",
        ("MiuiBrowser", "Android", "mobile"),
    ),
    (
        "Mozilla/5.0 (Linux; Android 14; Pixel 7 Build/UQ1A.240205.004; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/124.0.6367.54 Mobile Safari/537.36",
        ("Chrome", "Android", "mobile"),
    ),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
        ("Safari", "iOS", "mobile"),
    ),
]

BOTS = [
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.6367.82 Mobile Safari/537.36 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
    "Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)",
    "Mozilla/5.0 (compatible; Baiduspider/2.0; +http://www.baidu.com/search/spider.html)",
    "DuckDuckBot/1.1; (+http://duckduckgo.com/duckduckbot.html)",
    "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
    "Mozilla/5.0 (compatible; SemrushBot/7~bl; +http://www.semrush.com/bot.html)",
    "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; +https://openai.com/gptbot)",
    "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; ClaudeBot/1.0; +claudebot@anthropic.com)",
    "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
    "Twitterbot/1.0",
    "LinkedInBot/1.0 (compatible; Mozilla/5.0; Apache-HttpClient +http://www.linkedin.com)",
    "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
    "WhatsApp/2.23.20.0",
    "TelegramBot (like TwitterBot)",
    "Mozilla/5.0 (compatible; Discordbot/2.0; +https://discordapp.com)",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/156.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Linux; Android 11; moto g power (2022)) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0.0.0 Mobile Safari/537.36 Chrome-Lighthouse",
    "Mozilla/5.0 (Unknown; Linux x86_64) AppleWebKit/538.1 (KHTML, like Gecko) PhantomJS/2.1.1 Safari/538.1",
    "curl/7.88.1",
    "Wget/1.21.3",
    "python-requests/2.31.0",
    "Python-urllib/3.11",
    "python-httpx/0.27.0",
    "Go-http-client/1.1",
    "okhttp/4.12.0",
    "axios/1.6.8",
    "node-fetch/1.0 (+https://github.com/bitinn/node-fetch)",
    "Java/17.0.2",
    "Apache-HttpClient/4.5.14 (Java/17.0.2)",
    "libwww-perl/6.72",
    "Scrapy/2.11.1 (+https://scrapy.org)",
    "Mozilla/5.0+(compatible; UptimeRobot/2.0; http://www.uptimerobot.com/)",
    "Pingdom.com_bot_version_1.4_(http://www.pingdom.com/)",
    "Mozilla/5.0 (compatible; MJ12bot/v1.4.8; http://mj12bot.com/)",
    "Mozilla/5.0 (compatible; Bytespider; spider-feedback@bytedance.com)",
    "Mozilla/5.0 (compatible; PetalBot;+https://webmaster.petalsearch.com/site/petalbot)",
    "CCBot/2.0 (https://commoncrawl.org/faq/)",
    "Mozilla/5.0 (compatible; DataForSeoBot/1.0; +https://dataforseo.com/dataforseo-bot)",
]

PARSERS = [footfall.agents.parse_agent, footfall.agents.parse_agent_slow]


def test_table_has_enough_real_user_agents() -> None:
    """The table covers at least 60 real strings: browsers on every platform, and bots."""
    assert len(BROWSERS) + len(BOTS) >= 60


@pytest.mark.parametrize("parse", PARSERS, ids=["fast", "user-agents"])
@pytest.mark.parametrize(("agent", "expected"), BROWSERS, ids=[f"browser-{i}" for i in range(len(BROWSERS))])
def test_browsers_get_display_names_and_are_never_bots(parse, agent: str, expected: tuple[str, str, str]) -> None:  # type: ignore[no-untyped-def]
    """Each real browser gets its display browser, OS and device class, and is not a bot, on both parsing paths."""
    result = parse(agent)
    assert (result.browser, result.os, result.device) == expected
    assert result.is_bot is False


@pytest.mark.parametrize("parse", PARSERS, ids=["fast", "user-agents"])
@pytest.mark.parametrize("agent", BOTS, ids=[f"bot-{i}" for i in range(len(BOTS))])
def test_bots_are_flagged(parse, agent: str) -> None:  # type: ignore[no-untyped-def]
    """Crawlers, headless browsers, HTTP libraries, monitors and preview fetchers are bots."""
    assert parse(agent).is_bot is True


def test_every_token_of_the_bot_list_makes_a_bot_in_any_case() -> None:
    """Each entry of footfall's own list, anywhere in an otherwise ordinary browser string and in any letter case, makes
    it a bot; the browser alone is not one."""
    browser = "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0"
    assert footfall.agents.looks_like_bot(browser) is False
    for token in footfall.agents._BOT_TOKENS:
        for variant in (token, token.upper(), token.title()):
            assert footfall.agents.looks_like_bot(f"{browser} {variant}x"), variant
            assert footfall.agents.looks_like_bot(f"{variant}{browser}"), variant
    assert footfall.agents.looks_like_bot(f"{browser} SomeBot") and not footfall.agents.looks_like_bot(f"{browser} Botany")


def test_umami_node_client_is_not_a_bot() -> None:
    """@umami/node's default user agent is a server-side sender, not a bot (Umami accepts it too)."""
    assert footfall.agents.parse_agent("Mozilla/5.0 Umami/v20.20.2").is_bot is False


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("screen", "device"), [("1920x1080", "laptop"), ("1921x1080", "desktop"), ("wide", "desktop"), (None, "desktop")]
)
async def test_laptop_rule_through_the_api(
    client: AppClient, db_path: Path, website: str, screen: str | None, device: str
) -> None:
    """A desktop browser with a screen at most 1920 px wide is stored as a laptop (Umami's rule)."""
    payload = {"url": "/"} if screen is None else {"url": "/", "screen": screen}
    response = await client.post("/api/send", json=hit(website, **payload), headers={"User-Agent": BROWSERS[0][0]})
    assert response.status_code == 200
    await flush(client)
    assert rows(db_path, "SELECT browser, os, device FROM sessions") == [("Chrome", "Windows", device)]


@pytest.mark.anyio
async def test_overrides_are_truncated(client: AppClient, db_path: Path, website: str) -> None:
    """payload.browser/os/device override detection, truncated to 20 characters."""
    response = await client.post(
        "/api/send",
        json=hit(website, url="/", browser="B" * 30, os="", device="kiosk"),
        headers={"User-Agent": BROWSERS[0][0]},
    )
    assert response.status_code == 200
    await flush(client)
    assert rows(db_path, "SELECT browser, os, device FROM sessions") == [("B" * 20, "", "kiosk")]

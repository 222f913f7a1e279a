-- footfall.db — the public schema of footfall's SQLite file.
--
-- This file is a contract: people open the database with `sqlite3 footfall.db` and query it by hand, so every table, column
-- and view below is documented and kept stable. Tables may gain columns; a column a user might query is never renamed or
-- dropped without a compatibility view for at least one release. Query the views (`pageviews`, `events`, `custom_events`,
-- `daily_visitors`, `visits`, `sessions`) rather than the tables: they show text UUIDs and readable ISO-8601 UTC times.
--
-- Schema version: 1 (`PRAGMA user_version`). footfall applies this file with CREATE … IF NOT EXISTS on every start, then runs
-- its numbered migrations, each in one transaction with its user_version bump.
--
-- Conventions:
--   * Every timestamp is an INTEGER of Unix seconds, UTC. The views show them as 'YYYY-MM-DDTHH:MM:SSZ'.
--   * Tables reference each other by small integer keys (`*_key`); the UUIDs the API speaks (`*_id`) live only in `website`,
--     `session` and `visit`. This keeps an event row small (≈100 bytes) and inserts fast.
--   * Names follow Umami's (website, session, website_event, event_data, session_data, url_path, referrer_domain,
--     event_type …) so people who know Umami can query footfall.
--   * No IP address and no full user-agent string is ever stored.
--
-- Example: pageviews per day for the last week.
--   SELECT day, count(*) FROM pageviews WHERE day >= date('now', '-7 days') GROUP BY day ORDER BY day;

-----------------------------------------------------------------------------------------------------------------------------
-- Settings and secrets
-----------------------------------------------------------------------------------------------------------------------------

-- One row per install-wide setting. Written by footfall on first start (the install secret) and by `footfall` commands.
-- Kept for the life of the database.
CREATE TABLE IF NOT EXISTS setting (
    name       TEXT    PRIMARY KEY,                -- 'install_secret'; 'password_hash' (the summary page's, scrypt);
                                                   -- 'rollup_event_key', 'rollup_shift', 'rollup_zone', 'rollup_epoch',
                                                   -- 'rollup_version' (rollup upkeep; another version rebuilds them);
                                                   -- 'ship_clickhouse' (JSON: per ClickHouse target, the last event key
                                                   -- shipped, the batch in flight and the identify data time reached)
                                                   -- and 'ship_event_key' (the highest key any target holds: new events
                                                   -- get keys above it) for `footfall ship clickhouse`
    value      TEXT    NOT NULL,                   -- its value (the install secret is 64 random hex digits)
    updated_at INTEGER NOT NULL                    -- when it was last written, Unix seconds
) WITHOUT ROWID;

-- One row per salt period (day, week or month, by --salt-rotation). The salt is random; it is mixed into session ids so that
-- visitors can be told apart within a period but not followed across periods. A salt is deleted once its period has ended
-- (plus a short grace window), after which no session id of that period can be re-derived from a guessed IP and user agent.
CREATE TABLE IF NOT EXISTS salt (
    period     TEXT    PRIMARY KEY,                -- rotation and period start, e.g. 'month:2026-11-01'
    salt       TEXT    NOT NULL CHECK (length(salt) >= 32), -- random hex digits (64 when footfall makes it)
    starts_at  INTEGER NOT NULL,                   -- period start, Unix seconds
    ends_at    INTEGER NOT NULL                    -- period end (exclusive), Unix seconds
) WITHOUT ROWID;

-----------------------------------------------------------------------------------------------------------------------------
-- Websites
-----------------------------------------------------------------------------------------------------------------------------

-- One row per tracked website. Written by `footfall site add` (and on first start, a site called 'default').
-- `footfall site remove` sets deleted_at; events for a deleted site are refused with 'Website not found.'.
CREATE TABLE IF NOT EXISTS website (
    website_key INTEGER PRIMARY KEY,               -- small key the other tables use
    website_id  TEXT    NOT NULL UNIQUE            -- the UUID sites put in data-website-id (lower case)
                CHECK (length(website_id) = 36),
    name        TEXT    NOT NULL CHECK (length(name) BETWEEN 1 AND 100), -- display name
    domain      TEXT             CHECK (length(domain) <= 100),          -- the site's main domain, if given
    created_at  INTEGER NOT NULL,                  -- Unix seconds
    deleted_at  INTEGER,                           -- Unix seconds of soft deletion; NULL while active
    retention_days INTEGER CHECK (retention_days > 0) -- events older than this many days are deleted daily; NULL: kept
);

-----------------------------------------------------------------------------------------------------------------------------
-- Sessions and visits
-----------------------------------------------------------------------------------------------------------------------------

-- One row per session: a visitor (hash of website, IP, user agent and the period salt; or of website and distinct id) within
-- one salt period. Written by the collector the first time a session is seen; the first-seen attributes stick, as in Umami.
CREATE TABLE IF NOT EXISTS session (
    session_key INTEGER PRIMARY KEY,               -- small key the other tables use
    session_id  TEXT    NOT NULL UNIQUE            -- the UUID returned as sessionId
                CHECK (length(session_id) = 36),
    website_key INTEGER NOT NULL REFERENCES website (website_key), -- the session's website
    browser     TEXT    CHECK (length(browser) <= 20),     -- display name, e.g. 'Chrome', 'Firefox', 'Safari'
    os          TEXT    CHECK (length(os) <= 20),          -- display name, e.g. 'Windows', 'macOS', 'Android'
    device      TEXT    CHECK (length(device) <= 20),      -- 'desktop', 'laptop', 'mobile', 'tablet' (or a payload override)
    screen      TEXT    CHECK (length(screen) <= 11),      -- as sent, e.g. '1920x1080'
    language    TEXT    CHECK (length(language) <= 35),    -- as sent, e.g. 'en-US'
    country     TEXT    CHECK (length(country) = 2),       -- ISO 3166-1 alpha-2, when known
    region      TEXT    CHECK (length(region) <= 20),      -- ISO 3166-2 'CC-RR', when known
    city        TEXT    CHECK (length(city) <= 50),        -- city name, when known
    distinct_id TEXT    CHECK (length(distinct_id) <= 50), -- the client's own id for the person (payload.id), if any
    created_at  INTEGER NOT NULL                   -- first seen, Unix seconds
);

-- One row per visit: a run of a session's activity with no gap longer than --visit-timeout (30 minutes by default).
-- Written by the collector when a visit starts. The rule: an event joins its session's visit if it is at most
-- --visit-timeout after the visit's last event, or at most 5 minutes before its first (clock skew, batch items out of
-- order), and the visit then spans at most 24 hours from its first event to its last; otherwise the event starts a visit
-- of its own. So no visit is longer than 24 h, and events sent ever further back in time are separate visits, not one
-- chain. started_at follows the visit's earliest event (it moves back when an earlier one joins).
CREATE TABLE IF NOT EXISTS visit (
    visit_key   INTEGER PRIMARY KEY,               -- small key the events use
    visit_id    TEXT    NOT NULL UNIQUE            -- the UUID returned as visitId
                CHECK (length(visit_id) = 36),
    session_key INTEGER NOT NULL REFERENCES session (session_key), -- the visit's session
    started_at  INTEGER NOT NULL                   -- time of the visit's first event, Unix seconds
);
-- A session's visits in time order (the summary's visitor counts look up each visit's neighbours).
CREATE INDEX IF NOT EXISTS idx_visit_session_key_started_at ON visit (session_key, started_at);
-- A country's sessions, for a summary filtered by country (one entry per session: cheap to keep).
CREATE INDEX IF NOT EXISTS idx_session_website_key_country ON session (website_key, country) WHERE country IS NOT NULL;

-----------------------------------------------------------------------------------------------------------------------------
-- Events
-----------------------------------------------------------------------------------------------------------------------------

-- One row per pageview (event_type 1), custom event (2) or performance report (5). Written by the collector, appended in
-- time order; `identify` calls write no row here. Strings longer than their limit are truncated, never refused.
CREATE TABLE IF NOT EXISTS website_event (
    event_key       INTEGER PRIMARY KEY,           -- insertion order
    website_key     INTEGER NOT NULL REFERENCES website (website_key), -- the event's website
    session_key     INTEGER NOT NULL REFERENCES session (session_key), -- the visitor's session
    visit_key       INTEGER NOT NULL REFERENCES visit (visit_key),     -- the visit it belongs to
    created_at      INTEGER NOT NULL,              -- event time, Unix seconds (payload.timestamp, else time received)
    event_type      INTEGER NOT NULL CHECK (event_type IN (1, 2, 5)), -- 1 pageview, 2 custom event, 5 performance
    event_name      TEXT    CHECK (length(event_name) <= 50),         -- custom event name (payload.name)
    url_path        TEXT    NOT NULL CHECK (length(url_path) <= 500), -- path and #hash, percent-decoded
    url_query       TEXT    CHECK (length(url_query) <= 500),         -- query string without '?', as sent
    referrer_path   TEXT    CHECK (length(referrer_path) <= 500),     -- referrer path, percent-decoded
    referrer_query  TEXT    CHECK (length(referrer_query) <= 500),    -- referrer query string without '?'
    referrer_domain TEXT    CHECK (length(referrer_domain) <= 500),   -- referrer host without 'www.'
    self_referral   INTEGER NOT NULL DEFAULT 0 CHECK (self_referral IN (0, 1)), -- 1 when the referrer is the site itself
    page_title      TEXT    CHECK (length(page_title) <= 500),        -- document title
    hostname        TEXT    CHECK (length(hostname) <= 100),          -- site host (payload.hostname, else the URL's)
    tag             TEXT    CHECK (length(tag) <= 50),                -- data-tag of the tracker
    utm_source      TEXT    CHECK (length(utm_source) <= 255),        -- utm_source of the URL, decoded
    utm_medium      TEXT    CHECK (length(utm_medium) <= 255),        -- utm_medium, decoded
    utm_campaign    TEXT    CHECK (length(utm_campaign) <= 255),      -- utm_campaign, decoded
    utm_content     TEXT    CHECK (length(utm_content) <= 255),       -- utm_content, decoded
    utm_term        TEXT    CHECK (length(utm_term) <= 255),          -- utm_term, decoded
    gclid           TEXT    CHECK (length(gclid) <= 255),             -- Google Ads click id from the URL
    fbclid          TEXT    CHECK (length(fbclid) <= 255),            -- Meta click id
    msclkid         TEXT    CHECK (length(msclkid) <= 255),           -- Microsoft Ads click id
    ttclid          TEXT    CHECK (length(ttclid) <= 255),            -- TikTok click id
    li_fat_id       TEXT    CHECK (length(li_fat_id) <= 255),         -- LinkedIn click id
    twclid          TEXT    CHECK (length(twclid) <= 255),            -- X (Twitter) click id
    lcp             REAL,                          -- Largest Contentful Paint, ms (performance events)
    inp             REAL,                          -- Interaction to Next Paint, ms
    cls             REAL,                          -- Cumulative Layout Shift, unitless
    fcp             REAL,                          -- First Contentful Paint, ms
    ttfb            REAL,                          -- Time To First Byte, ms
    duration        INTEGER CHECK (duration >= 0)  -- how long the page was visible, ms (footfall's tracker, on page hide)
);
-- Time-ordered per site, so appends stay at the end of the index (no index on a random key here: that would cost ~3x in
-- insert speed).
CREATE INDEX IF NOT EXISTS idx_website_event_website_key_created_at ON website_event (website_key, created_at);
-- A visit's events in time order, for the `visits` view and the summary rollups (visit keys grow with time, so this is
-- appended to as well).
CREATE INDEX IF NOT EXISTS idx_website_event_visit_key_created_at ON website_event (visit_key, created_at);
-- The visits of a filtered summary, found by key instead of by reading every event of the period: custom events by name,
-- and the events that carry a referrer or UTM value (partial indexes: they cost only for those events; bench/summary.py
-- measures what they cost on insert). Few values take most of their events, so each insert lands on a page the last
-- commit touched already.
-- A page filter finds its visits in rollup_visit_page instead, written in bulk by the rollup refresh: an index by page
-- took every pageview to one of a site's many pages (one more page of the file written per event and commit), which
-- halved the collector's insert rate. Dropped here from databases made before.
DROP INDEX IF EXISTS idx_website_event_page;
CREATE INDEX IF NOT EXISTS idx_website_event_name ON website_event (website_key, event_name, created_at) WHERE event_type = 2;
CREATE INDEX IF NOT EXISTS idx_website_event_referrer ON website_event (website_key, referrer_domain, created_at)
    WHERE referrer_domain IS NOT NULL;
CREATE INDEX IF NOT EXISTS idx_website_event_utm_source ON website_event (website_key, utm_source, created_at)
    WHERE utm_source IS NOT NULL;
CREATE INDEX IF NOT EXISTS idx_website_event_utm_medium ON website_event (website_key, utm_medium, created_at)
    WHERE utm_medium IS NOT NULL;
CREATE INDEX IF NOT EXISTS idx_website_event_utm_campaign ON website_event (website_key, utm_campaign, created_at)
    WHERE utm_campaign IS NOT NULL;

-- One row per flattened key of a custom event's `data` ({"a": {"b": 1}} gives key 'a.b'). Written with its event.
CREATE TABLE IF NOT EXISTS event_data (
    event_key    INTEGER NOT NULL REFERENCES website_event (event_key) ON DELETE CASCADE, -- the custom event
    data_key     TEXT    NOT NULL CHECK (length(data_key) <= 500),      -- dotted key path
    data_type    INTEGER NOT NULL CHECK (data_type BETWEEN 1 AND 5),    -- 1 string, 2 number, 3 boolean, 4 date, 5 array
    string_value TEXT    CHECK (length(string_value) <= 500),           -- the value as text (numbers with 4 decimals,
                                                                        -- dates as ISO-8601, arrays as JSON)
    number_value REAL,                                                  -- the value, for numbers
    date_value   INTEGER,                                               -- the value as Unix seconds, for dates
    PRIMARY KEY (event_key, data_key)
) WITHOUT ROWID;

-- One row per event imported from Umami (`footfall import umami`): its Umami id, so importing the same export again
-- inserts nothing twice. Written by the import; goes with its event (prune, retention, forget).
CREATE TABLE IF NOT EXISTS umami_event (
    event_id  TEXT    PRIMARY KEY CHECK (length(event_id) = 36), -- Umami's website_event.event_id (lower case)
    event_key INTEGER NOT NULL UNIQUE REFERENCES website_event (event_key) ON DELETE CASCADE -- the event it became
) WITHOUT ROWID;

-- One row per flattened key a session was `identify`-ed with; a later identify with the same key replaces the value.
CREATE TABLE IF NOT EXISTS session_data (
    session_key  INTEGER NOT NULL REFERENCES session (session_key) ON DELETE CASCADE, -- the identified session
    data_key     TEXT    NOT NULL CHECK (length(data_key) <= 500),      -- dotted key path
    data_type    INTEGER NOT NULL CHECK (data_type BETWEEN 1 AND 5),    -- as event_data.data_type
    string_value TEXT    CHECK (length(string_value) <= 500),           -- as event_data.string_value
    number_value REAL,                                                  -- as event_data.number_value
    date_value   INTEGER,                                               -- as event_data.date_value
    distinct_id  TEXT    CHECK (length(distinct_id) <= 50),             -- payload.id at the time, if any
    created_at   INTEGER NOT NULL,                                      -- last written, Unix seconds
    PRIMARY KEY (session_key, data_key)
) WITHOUT ROWID;

-- One row per website and UTC day with the number of requests refused as bots (answered {"beep":"boop"}, nothing else
-- stored). Written by the collector; lets the summary show how much was filtered.
CREATE TABLE IF NOT EXISTS bot_counter (
    website_key INTEGER NOT NULL REFERENCES website (website_key), -- the website the bots hit
    day         TEXT    NOT NULL CHECK (length(day) = 10),  -- 'YYYY-MM-DD', UTC
    hits        INTEGER NOT NULL CHECK (hits >= 0),         -- bot requests that day
    PRIMARY KEY (website_key, day)
) WITHOUT ROWID;

-----------------------------------------------------------------------------------------------------------------------------
-- Summary page: rollups and share links
-----------------------------------------------------------------------------------------------------------------------------
-- The summary page reads these hourly rollups instead of scanning events, so a month of ten million events renders in a
-- fraction of a second. They are derived data: footfall refreshes them from website_event a few seconds after each write,
-- and prune, retention and `footfall forget` correct them. Every number they hold is defined by a query on the public views
-- (README "Summary page" lists them); tests check the rollups against those queries. An hour is `hour` … `hour` + 3600; its
-- start is aligned to the summary time zone's offset (a whole hour for most zones; :30 or :45 for, e.g., India or Nepal).
--
-- Definitions: a visit starts at its first event and is counted in the hour it starts; its entry and exit pages are its first
-- and last pageview (ordered by created_at, then event_key); its referrer and UTM values are those of its first pageview; a
-- bounce is a visit with one pageview and no custom event; its duration is `visits.duration_s`.

-- One row per website, hour, metric and value. Totals use value ''. Metrics (what `n` counts):
--   'pageviews', 'events' (custom events), 'visits', 'bounces', 'duration' (sum of the hour's visits' duration_s) — totals;
--   'page' (pageviews per url_path), 'event' (custom events per event_name), 'event_key' (custom events per
--   JSON '["event name","data key"]'), 'event_value' (custom events per JSON '["event name","data key","value"]', the
--   value being event_data.string_value cut to 100 characters), 'reports' (performance events per url_path);
--   'entry', 'exit', 'referrer', 'utm_source', 'utm_medium', 'utm_campaign', 'country', 'browser', 'os', 'device',
--   'language', 'screen' — visits per value (visits without the value are not counted).
CREATE TABLE IF NOT EXISTS rollup (
    website_key INTEGER NOT NULL,                  -- the website
    metric      TEXT    NOT NULL,                  -- what is counted, see above
    hour        INTEGER NOT NULL,                  -- start of the hour, Unix seconds
    value       TEXT    NOT NULL,                  -- the dimension value; '' for totals
    n           INTEGER NOT NULL,                  -- the count (seconds, for 'duration')
    PRIMARY KEY (website_key, metric, hour, value)
) WITHOUT ROWID;

-- Visits that are a session's first visit since `since`: one row per website, hour and the hour the session's previous visit
-- started (0 when it had none). Distinct visitors between two hour boundaries A and B are then
--   SELECT sum(n) FROM rollup_visitors WHERE website_key = ? AND hour >= A AND hour < B AND since < A
-- (a session counts once: at its first visit in the range).
CREATE TABLE IF NOT EXISTS rollup_visitors (
    website_key INTEGER NOT NULL,                  -- the website
    hour        INTEGER NOT NULL,                  -- start of the hour the visits started in, Unix seconds
    since       INTEGER NOT NULL,                  -- start of the hour of the session's previous visit; 0 for a first visit
    n           INTEGER NOT NULL,                  -- how many such visits
    PRIMARY KEY (website_key, hour, since)
) WITHOUT ROWID;

-- Web vitals of performance events (event_type 5) per website, hour, metric and page, as a histogram of values rounded to
-- two significant figures (2345 ms counts as 2300), from which the summary takes the 75th percentile.
CREATE TABLE IF NOT EXISTS rollup_vitals (
    website_key INTEGER NOT NULL,                  -- the website
    hour        INTEGER NOT NULL,                  -- start of the hour, Unix seconds
    metric      TEXT    NOT NULL CHECK (metric IN ('lcp', 'inp', 'cls', 'fcp', 'ttfb')), -- which vital
    url_path    TEXT    NOT NULL,                  -- the page
    bin         REAL    NOT NULL,                  -- the value, two significant figures (ms; unitless for cls)
    n           INTEGER NOT NULL,                  -- how many reports had it
    PRIMARY KEY (website_key, hour, metric, url_path, bin)
) WITHOUT ROWID;

-- Visits with a custom event, per event name, counted like rollup_visitors: one row per website, hour the visit started,
-- event name and the hour of the session's previous visit with that event (0 when none). Visitors who had event E in a
-- visit starting between hour boundaries A and B (the summary's "unique visitors" of a goal) are then
--   SELECT sum(n) FROM rollup_event_visitors WHERE website_key = ? AND event_name = 'E' AND hour >= A AND hour < B
--   AND since < A
CREATE TABLE IF NOT EXISTS rollup_event_visitors (
    website_key INTEGER NOT NULL,                  -- the website
    hour        INTEGER NOT NULL,                  -- start of the hour the visits started in, Unix seconds
    event_name  TEXT    NOT NULL,                  -- the custom event's name ('' when it had none)
    since       INTEGER NOT NULL,                  -- start of the hour of the session's previous visit with that event; 0
    n           INTEGER NOT NULL,                  -- how many such visits
    PRIMARY KEY (website_key, hour, event_name, since)
) WITHOUT ROWID;

-- The same four rollups summed per local day of the summary time zone (`day` is that day's midnight, Unix seconds), kept
-- in step with the hourly ones, so a month is read as 30 rows per value instead of 720. In rollup_daily_visitors, `since`
-- is still an hour (the session's previous visit's), so the visitor formula above works for any range start.
CREATE TABLE IF NOT EXISTS rollup_daily (
    website_key INTEGER NOT NULL,                  -- the website
    metric      TEXT    NOT NULL,                  -- as rollup.metric
    day         INTEGER NOT NULL,                  -- local midnight starting the day, Unix seconds
    value       TEXT    NOT NULL,                  -- as rollup.value
    n           INTEGER NOT NULL,                  -- sum of the day's hourly n
    PRIMARY KEY (website_key, metric, day, value)
) WITHOUT ROWID;
-- rollup_visitors per local day.
CREATE TABLE IF NOT EXISTS rollup_daily_visitors (
    website_key INTEGER NOT NULL,                  -- the website
    day         INTEGER NOT NULL,                  -- local midnight starting the day the visits started in
    since       INTEGER NOT NULL,                  -- as rollup_visitors.since (an hour; 0 for a first visit)
    n           INTEGER NOT NULL,                  -- how many such visits
    PRIMARY KEY (website_key, day, since)
) WITHOUT ROWID;
-- rollup_vitals per local day.
CREATE TABLE IF NOT EXISTS rollup_daily_vitals (
    website_key INTEGER NOT NULL,                  -- the website
    day         INTEGER NOT NULL,                  -- local midnight starting the day
    metric      TEXT    NOT NULL,                  -- as rollup_vitals.metric
    url_path    TEXT    NOT NULL,                  -- the page
    bin         REAL    NOT NULL,                  -- as rollup_vitals.bin
    n           INTEGER NOT NULL,                  -- how many reports had it that day
    PRIMARY KEY (website_key, url_path, metric, day, bin) -- a page's histograms over many days are one range
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS idx_rollup_daily_vitals_day ON rollup_daily_vitals (website_key, day);
-- rollup_event_visitors per local day.
CREATE TABLE IF NOT EXISTS rollup_daily_event_visitors (
    website_key INTEGER NOT NULL,                  -- the website
    day         INTEGER NOT NULL,                  -- local midnight starting the day the visits started in
    event_name  TEXT    NOT NULL,                  -- as rollup_event_visitors.event_name
    since       INTEGER NOT NULL,                  -- as rollup_event_visitors.since (an hour; 0 for none)
    n           INTEGER NOT NULL,                  -- how many such visits
    PRIMARY KEY (website_key, day, event_name, since)
) WITHOUT ROWID;

-- One row per visit with events, as the rollups count it, written with the hour the visit starts in (recomputed with it,
-- never updated; dropped and rebuilt with the other rollups). A filtered summary reads these facts of its segment's visits
-- by key and aggregates them with SQL instead of rebuilding every visit from its events. Columns as in the `visits` view
-- and the definitions above (entry, exit, referrer and UTM of the visit; the session's attributes copied from `session`).
CREATE TABLE IF NOT EXISTS rollup_visit (
    visit_key     INTEGER PRIMARY KEY,             -- the visit (visit.visit_key)
    website_key   INTEGER NOT NULL,                -- the website
    session_key   INTEGER NOT NULL,                -- the visit's session
    started_at    INTEGER NOT NULL,                -- its first event, Unix seconds
    pageviews     INTEGER NOT NULL,                -- its pageviews
    custom_events INTEGER NOT NULL,                -- its custom events (a bounce: 1 pageview, 0 custom events)
    duration_s    INTEGER NOT NULL,                -- as visits.duration_s
    entry         TEXT,                            -- url_path of its first pageview (NULL: no pageview)
    exit          TEXT,                            -- url_path of its last pageview
    referrer      TEXT,                            -- referrer_domain of its first pageview, unless a self-referral
    utm_source    TEXT,                            -- utm_source of its first pageview
    utm_medium    TEXT,                            -- utm_medium of its first pageview
    utm_campaign  TEXT,                            -- utm_campaign of its first pageview
    country       TEXT,                            -- the session's country, as in `session`
    browser       TEXT,                            -- the session's browser
    os            TEXT,                            -- the session's os
    device        TEXT,                            -- the session's device
    language      TEXT,                            -- the session's language
    screen        TEXT,                            -- the session's screen
    event_names   TEXT                             -- JSON array of its custom events' names, sorted; NULL: none
);
CREATE INDEX IF NOT EXISTS idx_rollup_visit_website_key_started_at ON rollup_visit (website_key, started_at);

-- The pages of each visit in rollup_visit: one row per visit and page it viewed, written and dropped with its fact. A
-- summary filtered by a page finds its visits here by key (the events have no index by page: see website_event).
--   Example: SELECT count(*) FROM rollup_visit_page WHERE website_key = 1 AND url_path = '/pricing';
CREATE TABLE IF NOT EXISTS rollup_visit_page (
    website_key INTEGER NOT NULL,                  -- the website
    url_path    TEXT    NOT NULL,                  -- a page the visit viewed (website_event.url_path of a pageview)
    started_at  INTEGER NOT NULL,                  -- the visit's start (rollup_visit.started_at)
    visit_key   INTEGER NOT NULL,                  -- the visit
    PRIMARY KEY (website_key, url_path, started_at, visit_key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS idx_rollup_visit_page_visit_key ON rollup_visit_page (visit_key);

-- Public, read-only share links of the summary page: one per website at most. Written by `footfall site share`.
CREATE TABLE IF NOT EXISTS share_link (
    token       TEXT    PRIMARY KEY CHECK (length(token) >= 32), -- the unguessable part of /share/TOKEN
    website_key INTEGER NOT NULL UNIQUE REFERENCES website (website_key), -- the only website the link shows
    created_at  INTEGER NOT NULL                   -- Unix seconds
) WITHOUT ROWID;

-----------------------------------------------------------------------------------------------------------------------------
-- Logins and API keys
-----------------------------------------------------------------------------------------------------------------------------
-- Who may read the numbers, besides share links: a correct password makes a login (the page's /login form, or
-- POST /api/auth/login for Umami API clients); `footfall api-key create` makes a key for scripts. Only a SHA-256 of each
-- token or key is stored, so a copy of this file gives nobody a working cookie, token or key.

-- One row per login. Written by /login and POST /api/auth/login; deleted by logout, by `footfall password` (all of them),
-- and once expired or made under another password (at the next login). The cookie or Bearer token carries the token.
CREATE TABLE IF NOT EXISTS login_session (
    token_hash   TEXT    PRIMARY KEY CHECK (length(token_hash) = 64),    -- SHA-256 of the token, lower-case hex
    kind         TEXT    NOT NULL CHECK (kind IN ('page', 'api')),      -- 'page': the login cookie; 'api': an API token
    password_tag TEXT    NOT NULL CHECK (length(password_tag) = 16),    -- first 16 hex digits of SHA-256 of the password
                                                                        -- hash it was made under; another password voids it
    created_at   INTEGER NOT NULL,                 -- login time, Unix seconds
    expires_at   INTEGER NOT NULL,                 -- end of the login (created_at + --login-max-days), Unix seconds
    last_used_at INTEGER NOT NULL                  -- last request made with it, Unix seconds (written at most once a minute)
) WITHOUT ROWID;

-- One row per API key. Written by `footfall api-key create NAME` (which prints the key once), deleted by
-- `footfall api-key revoke NAME`. A key is sent as `Authorization: Bearer KEY` or `x-umami-api-key: KEY`; it lasts until
-- revoked (a new password does not end it).
CREATE TABLE IF NOT EXISTS api_key (
    name         TEXT    PRIMARY KEY CHECK (length(name) BETWEEN 1 AND 50), -- the operator's name for the key
    key_hash     TEXT    NOT NULL UNIQUE CHECK (length(key_hash) = 64),     -- SHA-256 of the key, lower-case hex
    created_at   INTEGER NOT NULL,                 -- Unix seconds
    last_used_at INTEGER                           -- last request made with it, Unix seconds (at most once a minute); NULL:
                                                   -- never used
) WITHOUT ROWID;

-----------------------------------------------------------------------------------------------------------------------------
-- Views: the stable surface for people querying by hand
-----------------------------------------------------------------------------------------------------------------------------

-- Every event with its website, session and visit UUIDs and the session's attributes; times as ISO-8601 UTC.
-- Example: SELECT url_path, count(*) FROM events WHERE event_type = 1 GROUP BY 1 ORDER BY 2 DESC LIMIT 10;
CREATE VIEW IF NOT EXISTS events AS
SELECT e.event_key,
       w.website_id,
       s.session_id,
       v.visit_id,
       strftime('%Y-%m-%dT%H:%M:%SZ', e.created_at, 'unixepoch') AS created_at,
       date(e.created_at, 'unixepoch')                            AS day,
       e.event_type,
       CASE e.event_type WHEN 1 THEN 'pageview' WHEN 2 THEN 'event' WHEN 5 THEN 'performance' END AS event_kind,
       e.event_name, e.url_path, e.url_query,
       e.referrer_domain, e.referrer_path, e.referrer_query, e.self_referral,
       e.page_title, e.hostname, e.tag,
       e.utm_source, e.utm_medium, e.utm_campaign, e.utm_content, e.utm_term,
       e.gclid, e.fbclid, e.msclkid, e.ttclid, e.li_fat_id, e.twclid,
       e.lcp, e.inp, e.cls, e.fcp, e.ttfb, e.duration,
       s.browser, s.os, s.device, s.screen, s.language, s.country, s.region, s.city, s.distinct_id,
       e.created_at AS created_unix
  FROM website_event e
  JOIN website w ON w.website_key = e.website_key
  JOIN session s ON s.session_key = e.session_key
  JOIN visit   v ON v.visit_key   = e.visit_key;

-- Pageviews only (event_type 1), same columns as `events`.
-- Example: SELECT day, count(*) AS views, count(DISTINCT session_id) AS visitors FROM pageviews GROUP BY day;
CREATE VIEW IF NOT EXISTS pageviews AS
SELECT * FROM events WHERE event_type = 1;

-- Custom events (event_type 2) with each flattened data key as its own row (a NULL data_key when the event had no data).
-- Example: SELECT event_name, data_key, string_value, count(*) FROM custom_events GROUP BY 1, 2, 3;
CREATE VIEW IF NOT EXISTS custom_events AS
SELECT ev.*, d.data_key, d.data_type, d.string_value, d.number_value,
       strftime('%Y-%m-%dT%H:%M:%SZ', d.date_value, 'unixepoch') AS date_value
  FROM events ev
  LEFT JOIN event_data d ON d.event_key = ev.event_key
 WHERE ev.event_type = 2;

-- One row per session with text UUIDs and ISO times.
-- Example: SELECT browser, count(*) FROM sessions GROUP BY 1 ORDER BY 2 DESC;
CREATE VIEW IF NOT EXISTS sessions AS
SELECT s.session_id, w.website_id, s.browser, s.os, s.device, s.screen, s.language,
       s.country, s.region, s.city, s.distinct_id,
       strftime('%Y-%m-%dT%H:%M:%SZ', s.created_at, 'unixepoch') AS created_at
  FROM session s
  JOIN website w ON w.website_key = s.website_key;

-- One row per visit: its start, end, length in seconds (event span or reported visible time), pageviews and custom events.
-- Example: SELECT avg(duration_s) FROM visits WHERE started_at >= strftime('%Y-%m-%dT%H:%M:%SZ', 'now', '-30 days');
CREATE VIEW IF NOT EXISTS visits AS
SELECT v.visit_id, s.session_id, w.website_id,
       strftime('%Y-%m-%dT%H:%M:%SZ', min(e.created_at), 'unixepoch') AS started_at,
       strftime('%Y-%m-%dT%H:%M:%SZ', max(e.created_at), 'unixepoch') AS ended_at,
       -- the span of its events, or the visible time its pages reported if that is longer
       max(max(e.created_at) - min(e.created_at), ifnull(sum(e.duration), 0) / 1000) AS duration_s,
       sum(e.event_type = 1)                                          AS pageviews,
       sum(e.event_type = 2)                                          AS custom_events
  FROM visit v
  JOIN website_event e ON e.visit_key = v.visit_key
  JOIN session s ON s.session_key = v.session_key
  JOIN website w ON w.website_key = s.website_key
 GROUP BY v.visit_key;

-- Per website and UTC day: distinct visitors (sessions), visits and pageviews.
-- Example: SELECT * FROM daily_visitors WHERE day >= date('now', '-30 days') ORDER BY day;
CREATE VIEW IF NOT EXISTS daily_visitors AS
SELECT w.website_id,
       date(e.created_at, 'unixepoch')  AS day,
       count(DISTINCT e.session_key)    AS visitors,
       count(DISTINCT e.visit_key)      AS visits,
       sum(e.event_type = 1)            AS pageviews
  FROM website_event e
  JOIN website w ON w.website_key = e.website_key
 GROUP BY e.website_key, day;

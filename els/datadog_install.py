"""`els datadog install`: the dashboard and monitors in `datadog/` into a Datadog organisation, idempotently.

Why as code: the metric names, tags and thresholds live next to the pipeline that emits them (a test checks
that every queried metric is one the pipeline sends), and re-running the command converges Datadog to the
files instead of piling up copies. Identity: a dashboard by its title, a monitor by its `els-managed:<file
stem>` tag. With a non-default ELS_METRIC_PREFIX the metric names are rewritten, and the title, monitor
names and managed tags carry the prefix, so two pipelines sharing one Datadog organisation keep apart.

Every body is validated with datadog-api-client's models (els.datadog_models) before any request; the
client is configured exactly like the sink's (processor.sink.client.configuration: DD_URL, DD_SITE, API key).
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datadog_api_client import ApiClient
from datadog_api_client.exceptions import ApiException
from datadog_api_client.v1.api.dashboards_api import DashboardsApi
from datadog_api_client.v1.api.monitors_api import MonitorsApi
from datadog_api_client.v1.model.dashboard import Dashboard
from datadog_api_client.v1.model.monitor import Monitor
from datadog_api_client.v1.model.monitor_update_request import MonitorUpdateRequest

from common.config import BY_ENV, Config
from els.datadog_models import InvalidBody, validate

DEFAULT_PREFIX = BY_ENV["ELS_METRIC_PREFIX"].default
# the repository's datadog/ beside the package (a checkout, an editable install), else ./datadog (the image's /app)
_BESIDE = Path(__file__).resolve().parent.parent / "datadog"
DEFAULT_DIR = _BESIDE if _BESIDE.is_dir() else Path("datadog")
MANAGED = "els-managed"
# the monitor that notices when no ELS event arrives: its window is `els datadog install --silence-minutes`
SILENCE_MONITOR = "pipeline-silence"
SILENCE_MINUTES = 60
APP_KEY_WHY = (
    "Creating or updating dashboards and monitors needs a Datadog application key as "
    "well as the API key: the API key only lets the pipeline send data, while the dashboard and monitor APIs "
    "act on behalf of a user and refuse requests without an application key (create one under Organization "
    "Settings > Application Keys, with scopes dashboards_read, dashboards_write, monitors_read, "
    "monitors_write). `--dry-run` without keys only validates the files.")


class InstallError(Exception):
    """Datadog refused a request or could not be reached; the message is for the user (no secrets)."""


@dataclass
class Item:
    kind: str   # "dashboard" or "monitor"
    name: str   # title (dashboard) or name (monitor), for the output
    key: str    # identity: the title, or the managed tag
    body: dict  # the JSON to send, prefix applied
    model: Any  # the validated model: Dashboard or Monitor
    update_model: Any  # what an update sends: Dashboard or MonitorUpdateRequest


# -- files ----------------------------------------------------------------------------------------------------
def _substitute(value: Any, prefix: str) -> Any:
    """Every "okta.workflows." in a string (metric names in queries) becomes "<prefix>."."""
    if isinstance(value, str):
        return value.replace(DEFAULT_PREFIX + ".", prefix + ".")
    if isinstance(value, list):
        return [_substitute(v, prefix) for v in value]
    if isinstance(value, dict):
        return {k: _substitute(v, prefix) for k, v in value.items()}
    return value


def managed_tag(stem: str, prefix: str = DEFAULT_PREFIX) -> str:
    """The tag that finds a monitor again: els-managed:<stem>, or els-managed:<prefix>.<stem> for another
    prefix (so two pipelines in one organisation do not update each other's monitors)."""
    return f"{MANAGED}:{stem}" if prefix == DEFAULT_PREFIX else f"{MANAGED}:{prefix.lower()}.{stem}"


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidBody(f"{path}: cannot read: {exc}") from None
    except json.JSONDecodeError as exc:
        raise InvalidBody(f"{path}: invalid JSON: {exc}") from None


def with_silence(body: dict, minutes: int) -> dict:
    """The silence monitor for `minutes`: its threshold (seconds), its no-data timeframe, and the minutes it
    names."""
    body = json.loads(json.dumps(body).replace("{silence_minutes}", str(minutes)))
    if isinstance(body.get("query"), str):
        body["query"] = re.sub(r">=\s*\d+$", f">= {minutes * 60}", body["query"])
    if isinstance(body.get("options"), dict):
        body["options"]["no_data_timeframe"] = max(minutes, 10)
        if isinstance(body["options"].get("thresholds"), dict):
            body["options"]["thresholds"]["critical"] = minutes * 60
    return body


def load(directory: Path = DEFAULT_DIR, prefix: str = DEFAULT_PREFIX,
         silence_minutes: int = SILENCE_MINUTES) -> list[Item]:
    """The dashboards (`dashboard*.json`) and monitors (`monitors/*.json`) of `directory`, prefix applied and
    validated; InvalidBody names the file and the failing field. The silence monitor (SILENCE_MONITOR) is set to
    `silence_minutes`."""
    directory = Path(directory)
    dashboards = sorted(directory.glob("dashboard*.json"))
    monitors = sorted((directory / "monitors").glob("*.json"))
    if not dashboards and not monitors:
        raise InvalidBody(f"{directory}: no dashboard*.json nor monitors/*.json here")
    suffix = "" if prefix == DEFAULT_PREFIX else f" ({prefix})"
    items: list[Item] = []
    for path in dashboards:
        body = _substitute(_read(path), prefix)
        if isinstance(body, dict) and isinstance(body.get("title"), str):
            body["title"] += suffix
        model = validate(body, Dashboard, str(path))
        items.append(Item("dashboard", body["title"], body["title"], body, model, model))
    for path in monitors:
        raw = _read(path)
        tag = managed_tag(path.stem)
        if not isinstance(raw, dict) or tag not in (raw.get("tags") or []):
            raise InvalidBody(f"{path}: a monitor file must carry the tag {tag!r} (how install finds it again)")
        body = _substitute(raw, prefix)
        if path.stem == SILENCE_MONITOR:
            body = with_silence(body, silence_minutes)
        body["tags"] = [managed_tag(path.stem, prefix) if t == tag else t for t in body["tags"]]
        if isinstance(body.get("name"), str):
            body["name"] += suffix
        model = validate(body, Monitor, str(path))
        update = validate(dict(body), MonitorUpdateRequest, str(path))
        items.append(Item("monitor", body.get("name") or path.stem, managed_tag(path.stem, prefix), body, model,
                          update))
    titles = [i.key for i in items if i.kind == "dashboard"]
    dup = {t for t in titles if titles.count(t) > 1}
    if dup:
        raise InvalidBody(f"{directory}: several dashboards titled {sorted(dup)}; the title is their identity")
    return items


# -- comparing ------------------------------------------------------------------------------------------------
def same(want: Any, have: Any) -> bool:
    """Whether Datadog's object already holds `want`: every field sent is there with the same value (Datadog
    adds ids, timestamps and defaults, which are ignored); lists of strings (tags) compare as sets."""
    if isinstance(want, dict):
        return isinstance(have, dict) and all(k in have and same(v, have[k]) for k, v in want.items())
    if isinstance(want, list):
        if not isinstance(have, list) or len(want) != len(have):
            return False
        if all(isinstance(v, str) for v in want):
            return sorted(want) == sorted(map(str, have))
        return all(same(w, h) for w, h in zip(want, have, strict=True))
    if isinstance(want, (int, float)) and not isinstance(want, bool) and isinstance(have, (int, float)):
        return float(want) == float(have)
    return want == have


# -- talking to Datadog ---------------------------------------------------------------------------------------
def app_base(cfg: Config) -> str:
    """Where users open objects: DD_URL when set, else the site's web app (app.datadoghq.com,
    app.datadoghq.eu, us3.datadoghq.com, ...)."""
    if cfg.dd_url:
        return cfg.dd_url.rstrip("/")
    site = cfg.dd_site.strip().lower()
    return f"https://{site}" if site.count(".") >= 2 else f"https://app.{site}"


def _plain(model: Any) -> Any:
    return model.to_dict() if hasattr(model, "to_dict") else model


class Installer:
    """Creates or updates each Item; one line per object on `out`."""

    def __init__(self, cfg: Config, api: ApiClient, out=sys.stdout, dry_run: bool = False):
        self.cfg, self.out, self.dry_run = cfg, out, dry_run
        self.dashboards, self.monitors = DashboardsApi(api), MonitorsApi(api)
        self.base = app_base(cfg)
        self._titles: dict[str, list[str]] | None = None

    def _say(self, line: str) -> None:
        for secret in (self.cfg.dd_api_key, self.cfg.dd_app_key):
            if secret:
                line = line.replace(secret, "***")
        print(line, file=self.out, flush=True)

    def _call(self, what: str, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ApiException as exc:
            raise InstallError(_api_error(what, exc)) from None
        except Exception as exc:  # urllib3 connection/timeout errors and the like: the user needs the reason
            raise InstallError(f"{what}: cannot reach Datadog at {self.dashboards.api_client.configuration.host}"
                               f": {type(exc).__name__}: {exc}") from None

    def _dashboard_ids(self, title: str) -> list[str]:
        if self._titles is None:
            self._titles = {}
            for d in self._call("listing dashboards", lambda: list(self.dashboards.list_dashboards_with_pagination())):
                self._titles.setdefault(d.title, []).append(d.id)
        return self._titles.get(title, [])

    def dashboard(self, item: Item) -> str:
        ids = self._dashboard_ids(item.key)
        label = f"dashboard {item.name!r}"
        if len(ids) > 1:
            self._say(f"{label}: warning: {len(ids)} dashboards have this title; updating {ids[0]}, "
                      f"not {', '.join(ids[1:])}")
        if ids:
            have = _plain(self._call(f"reading dashboard {ids[0]}", self.dashboards.get_dashboard, ids[0]))
            url = self.base + (have.get("url") or f"/dashboard/{ids[0]}")
            if same(item.body, have):
                self._say(f"{label}: unchanged, id {ids[0]}, {url}")
                return "unchanged"
            if self.dry_run:
                self._say(f"{label}: would update id {ids[0]}, {url}")
                return "would update"
            got = _plain(self._call(f"updating dashboard {ids[0]}", self.dashboards.update_dashboard, ids[0],
                                    body=item.update_model))
            self._say(f"{label}: updated, id {ids[0]}, {self.base + (got.get('url') or f'/dashboard/{ids[0]}')}")
            return "updated"
        if self.dry_run:
            self._say(f"{label}: would create")
            return "would create"
        got = _plain(self._call("creating dashboard", self.dashboards.create_dashboard, body=item.model))
        self._titles.setdefault(item.key, []).append(got["id"])
        self._say(f"{label}: created, id {got['id']}, {self.base + (got.get('url') or '/dashboard/' + got['id'])}")
        return "created"

    def monitor(self, item: Item) -> str:
        found = self._call(f"listing monitors tagged {item.key}", self.monitors.list_monitors, monitor_tags=item.key)
        found = sorted((_plain(m) for m in found if item.key in (_plain(m).get("tags") or [])),
                       key=lambda m: m.get("id") or 0)
        label = f"monitor {item.key.partition(':')[2]} {item.name!r}"
        if len(found) > 1:
            self._say(f"{label}: warning: {len(found)} monitors carry {item.key}; updating {found[0]['id']}, "
                      f"not {', '.join(str(m['id']) for m in found[1:])}")
        if found:
            mid = found[0]["id"]
            url = f"{self.base}/monitors/{mid}"
            if same(item.body, found[0]):
                self._say(f"{label}: unchanged, id {mid}, {url}")
                return "unchanged"
            if self.dry_run:
                self._say(f"{label}: would update id {mid}, {url}")
                return "would update"
            self._call(f"updating monitor {mid}", self.monitors.update_monitor, mid, body=item.update_model)
            self._say(f"{label}: updated, id {mid}, {url}")
            return "updated"
        if self.dry_run:
            self._say(f"{label}: would create")
            return "would create"
        got = _plain(self._call("creating monitor", self.monitors.create_monitor, body=item.model))
        self._say(f"{label}: created, id {got['id']}, {self.base}/monitors/{got['id']}")
        return "created"

    def install(self, items: list[Item]) -> dict[str, int]:
        results: dict[str, int] = {}
        for item in items:
            r = self.dashboard(item) if item.kind == "dashboard" else self.monitor(item)
            results[r] = results.get(r, 0) + 1
        return results


def _api_error(what: str, exc: ApiException) -> str:
    body = exc.body
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if isinstance(body, dict):
        body = "; ".join(map(str, body.get("errors") or [])) or json.dumps(body)
    msg = f"{what}: Datadog answered {exc.status}: {str(body or exc.reason)[:500]}"
    if exc.status in (401, 403):
        msg += (" (check DD_API_KEY and DD_APP_KEY, that they belong to the organisation of DD_SITE, and that the "
                "application key has the dashboards_write and monitors_write scopes)")
    return msg


def run(cfg: Config, *, dry_run: bool = False, directory: Path | str | None = None, out=sys.stdout,
        err=sys.stderr, silence_minutes: int = SILENCE_MINUTES) -> int:
    """The command: 0 done, 1 Datadog refused or could not be reached, 2 bad files or missing keys."""
    from processor.sink.client import configuration

    try:
        items = load(Path(directory or DEFAULT_DIR), cfg.els_metric_prefix, silence_minutes)
    except InvalidBody as exc:
        print(f"els datadog install: {exc}", file=err)
        return 2
    missing = [n for n, v in (("DD_API_KEY", cfg.dd_api_key), ("DD_APP_KEY", cfg.dd_app_key)) if not v]
    if missing and dry_run:
        for item in items:
            print(f"{item.kind} {item.name!r}: valid; would create or update (not looked up: "
                  f"{' and '.join(missing)} not set)", file=out)
        return 0
    if missing:  # every missing key named at once, not one per attempt
        why = APP_KEY_WHY if "DD_APP_KEY" in missing else \
            "The dashboard and monitor APIs need it together with DD_APP_KEY."
        print(f"els datadog install: {' and '.join(missing)} {'are' if len(missing) > 1 else 'is'} not set. {why}",
              file=err)
        return 2
    conf = configuration(cfg)
    conf.api_key["appKeyAuth"] = cfg.dd_app_key
    with ApiClient(conf) as api:
        try:
            results = Installer(cfg, api, out, dry_run).install(items)
        except InstallError as exc:
            print(f"els datadog install: {exc}", file=err)
            return 1
    summary = ", ".join(f"{n} {r}" for r, n in sorted(results.items()))
    print(f"{'dry run: ' if dry_run else ''}{len(items)} objects: {summary}", file=out)
    return 0

"""The operator page: ``/operator`` on the daemon's metrics listener (no external assets; plant
networks are offline). Plain HTML/JS/CSS from ``inspector/ops/static/``, refreshed by polling
``/operator/state.json`` once a second.

Shows the last frame (a thumbnail the worker attaches, never published on the line PUB), its
verdicts and scores, the last N rejects with their Grad-CAM overlays, lot / recipe / expected
excipient, counters read from the same Prometheus registry as ``/metrics``, rates, readiness and
the OPC 40100-1 style machine state.

Access: a loopback ``metrics.listen`` needs no login; any other bind address requires
``operator.token_file``: without one the page answers 403 with the reason (``/metrics`` keeps
serving the scraper, so the documented ``0.0.0.0`` metrics setup still starts). The token is accepted as
``Authorization: Bearer …``, as ``?token=…`` (which also sets an HttpOnly cookie, so bookmarks work
without the token in later requests) or as that cookie.
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
import time
from collections import OrderedDict, deque
from http.cookies import SimpleCookie
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from inspector.errors import ConfigError
from inspector.line import state as run_state
from inspector.line.settings import OperatorConfig, operator_config
from inspector.transport.security import is_loopback_endpoint

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from inspector.daemon.supervisor import Supervisor

log = logging.getLogger("inspector.ops.operator")

PREFIX = "/operator"
COOKIE = "inspector_operator"
_STATIC = {"operator.js": "text/javascript; charset=utf-8", "operator.css": "text/css; charset=utf-8",
           "index.html": "text/html; charset=utf-8"}
_IMAGE_TYPES = {"png": "image/png", "jpeg": "image/jpeg"}
_JSON = "application/json; charset=utf-8"
#: the page's counters: name on the page -> Prometheus sample name (summed over labels)
COUNTERS = {
    "acquired": "inspector_frames_acquired_total",
    "processed": "inspector_frames_processed_total",
    "dropped": "inspector_frames_dropped_total",
    "lost": "inspector_frames_lost_total",
    "rejects_sent": "inspector_reject_commands_total",
    "rejects_acked": "inspector_reject_acks_total",
    "deadline_missed": "inspector_reject_deadline_missed_total",
}


def require_token(listen: str, ocfg: OperatorConfig) -> None:
    """Policy: the page on a non-loopback listener needs a token file; raises ConfigError naming the key."""
    if ocfg.enabled and not ocfg.token_file and not is_loopback_endpoint(f"tcp://{listen}"):
        raise ConfigError(f"operator.token_file is required: metrics.listen {listen} is reachable from the "
                          "network (set operator.token_file, or bind metrics.listen to 127.0.0.1)")


def load_token(path: str | None) -> str | None:
    if not path:
        return None
    try:
        token = Path(path).expanduser().read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"operator.token_file: cannot read {path}: {e}") from None
    if len(token) < 16:
        raise ConfigError(f"operator.token_file: {path} holds {len(token)} characters; need at least 16")
    return token


class OperatorFeed:
    """What the page shows; written by the supervisor thread, read by HTTP request threads."""

    def __init__(self, registry: CollectorRegistry, rejects: int):
        self.registry = registry
        self._lock = threading.Lock()
        self._images: OrderedDict[str, tuple[str, bytes]] = OrderedDict()
        self._rejects: deque[dict[str, Any]] = deque(maxlen=rejects)
        self._last: dict[str, Any] | None = None
        self._state: dict[str, Any] = {}
        self._rates: dict[str, float | None] = {"frames_per_s": None, "rejects_per_s": None}
        self._history: deque[tuple[float, float, float]] = deque(maxlen=64)

    # ---- supervisor side -------------------------------------------------------------------
    def published(self, headers: list[dict[str, Any]], attachments: list[tuple[Any, ...]]) -> None:
        if not headers:
            return
        fid = headers[0]["frame_id"]
        results = [{"inspection": h["inspection"], "verdict": h["verdict"], "scores": h.get("scores") or {},
                    "reason": h.get("reason"),
                    "identity": (h.get("detail") or {}).get("identity"),
                    "model": (h.get("model") or {}).get("version")} for h in headers]
        entry = {"frame_id": fid, "acquired_at": headers[0].get("acquired_at"), "results": results,
                 "verdict": _overall(results), "thumbnail": None, "gradcam": []}
        with self._lock:
            for kind, inspection, header, payload in attachments:
                fmt = "jpeg" if kind == "thumbnail" else "png"
                key = f"{fid}-{kind}-{inspection or 'frame'}.{'jpg' if fmt == 'jpeg' else 'png'}"
                self._images[key] = (_IMAGE_TYPES[fmt], payload)
                url = f"{PREFIX}/img/{key}"
                if kind == "thumbnail":
                    entry["thumbnail"] = url
                else:
                    entry["gradcam"].append({"inspection": inspection, "url": url,
                                             "class": (header or {}).get("class")})
            previous = self._last
            self._last = entry
            if entry["verdict"] == "reject":
                self._rejects.appendleft(entry)
            self._evict(previous)

    def _evict(self, previous: dict[str, Any] | None) -> None:
        keep = {u.rsplit("/", 1)[1] for e in [self._last, *self._rejects] if e for u in _urls(e)}
        for key in list(self._images):
            if key not in keep:
                del self._images[key]

    def update_state(self, snap: dict[str, Any]) -> None:
        now = time.monotonic()
        processed = _sum(self.registry, COUNTERS["processed"])
        rejects = sum(_samples(self.registry, "inspector_results_total", verdict="reject"))
        with self._lock:
            self._state = {**snap, "state": run_state.machine_state(snap)}
            if not self._history or now - self._history[-1][0] >= 1.0:
                self._history.append((now, processed, rejects))
            old = next((h for h in self._history if now - h[0] <= 10.0), None)
            if old is not None and now - old[0] >= 1.0:
                dt = now - old[0]
                self._rates = {"frames_per_s": round((processed - old[1]) / dt, 3),
                               "rejects_per_s": round((rejects - old[2]) / dt, 3)}

    # ---- HTTP side ---------------------------------------------------------------------------
    def state_json(self) -> dict[str, Any]:
        counters = {k: _sum(self.registry, v) for k, v in COUNTERS.items()}
        results: dict[str, dict[str, float]] = {}
        for labels, value in _labelled(self.registry, "inspector_results_total"):
            results.setdefault(labels.get("inspection", ""), {})[labels.get("verdict", "")] = value
        with self._lock:
            return {"state": dict(self._state), "counters": counters, "results": results, "rates": dict(self._rates),
                    "last": self._last, "rejects": list(self._rejects)}

    def image(self, key: str) -> tuple[str, bytes] | None:
        with self._lock:
            return self._images.get(key)


class OperatorPage:
    """The route handler mounted at ``/operator`` (thread-safe: it only reads the feed).
    ``locked``: a reason to refuse every request (403), e.g. a network bind without a token."""

    def __init__(self, feed: OperatorFeed, token: str | None, locked: str | None = None):
        self.feed = feed
        self.token = token
        self.locked = locked

    def __call__(self, path: str, query: str, headers: Any) -> tuple[int, bytes, str, dict[str, str]]:
        extra: dict[str, str] = {}
        if self.locked is not None:
            return 403, _json({"error": self.locked}), _JSON, extra
        if self.token is not None:
            given = _given_token(query, headers)
            if given is None or not hmac.compare_digest(given.encode(), self.token.encode()):
                return 401, _json({"error": "operator page: token required"}), _JSON, \
                    {"WWW-Authenticate": 'Bearer realm="inspector operator page"'}
            if "token=" in query:
                extra["Set-Cookie"] = f"{COOKIE}={self.token}; HttpOnly; SameSite=Strict; Path={PREFIX}"
        sub = path[len(PREFIX):].lstrip("/")
        if sub in ("", "index.html"):
            return 200, _static("index.html"), _STATIC["index.html"], extra
        if sub.startswith("static/") and sub[7:] in _STATIC:
            return 200, _static(sub[7:]), _STATIC[sub[7:]], extra
        if sub == "state.json":
            return 200, json.dumps(self.feed.state_json(), default=str).encode(), _JSON, extra
        if sub.startswith("img/"):
            img = self.feed.image(sub[4:])
            if img is not None:
                return 200, img[1], img[0], {**extra, "Cache-Control": "max-age=3600"}
        return 404, _json({"error": "not found"}), _JSON, extra


class OperatorHook:
    """Supervisor hook: feeds the page from ``on_published`` and ``tick``; mounts it on the HTTP
    listener of the ops hook (found on the first tick, when every hook exists)."""

    def __init__(self, sup: Supervisor):
        self.cfg = operator_config(sup.cfg)
        locked = None
        try:
            require_token(sup.cfg.metrics.listen, self.cfg)
        except ConfigError as e:
            locked = f"operator page locked: {e}"
            log.warning("%s", locked)
        self.feed = OperatorFeed(sup.metrics.registry, self.cfg.rejects)
        self.page = OperatorPage(self.feed, load_token(self.cfg.token_file), locked)
        self.mounted = False
        self._next_state = 0.0

    def on_published(self, sup: Supervisor, headers: list[dict[str, Any]], attachments: list[Any]) -> None:
        self.feed.published(headers, attachments)

    def tick(self, sup: Supervisor) -> None:
        if not self.mounted:
            for hook in sup.hooks:
                server = getattr(hook, "server", None)
                if server is not None and hasattr(server, "add_route"):
                    server.add_route(PREFIX, self.page)
                    self.mounted = True
                    log.info("operator page on %s%s%s", server.url, PREFIX,
                             " (locked)" if self.page.locked else " (token required)" if self.page.token else "")
                    break
        now = time.monotonic()
        if now >= self._next_state:
            self.feed.update_state(run_state.snapshot(sup))
            self._next_state = now + 0.25

    def close(self) -> None:
        pass


def _overall(results: list[dict[str, Any]]) -> str:
    verdicts = {r["verdict"] for r in results}
    return "reject" if "reject" in verdicts else "error" if "error" in verdicts else "pass"


def _urls(entry: dict[str, Any]) -> list[str]:
    return ([entry["thumbnail"]] if entry.get("thumbnail") else []) + [g["url"] for g in entry.get("gradcam", [])]


def _labelled(registry: CollectorRegistry, sample: str) -> list[tuple[dict[str, str], float]]:
    out = []
    for family in registry.collect():
        for s in family.samples:
            if s.name == sample:
                out.append((dict(s.labels), float(s.value)))
    return out


def _samples(registry: CollectorRegistry, sample: str, **match: str) -> list[float]:
    return [v for labels, v in _labelled(registry, sample) if all(labels.get(k) == x for k, x in match.items())]


def _sum(registry: CollectorRegistry, sample: str) -> float:
    return float(sum(_samples(registry, sample)))


def _given_token(query: str, headers: Any) -> str | None:
    auth = headers.get("Authorization", "") if headers is not None else ""
    if auth.startswith("Bearer "):
        return auth[7:].strip()
    q = parse_qs(query).get("token")
    if q:
        return q[0]
    cookie = SimpleCookie()
    try:
        cookie.load(headers.get("Cookie", "") if headers is not None else "")
    except Exception:  # a malformed cookie header is simply no token
        return None
    return cookie[COOKIE].value if COOKIE in cookie else None


def _static(name: str) -> bytes:
    return resources.files("inspector.ops").joinpath("static", name).read_bytes()


def _json(obj: object) -> bytes:
    return json.dumps(obj).encode()

"""The execution cinema as one self-contained HTML page (``execscope cinema TRACE --html FILE``).

The page embeds the frames :class:`~execscope.queries.cinema.Cinema` produces around one position
(at most ``max_frames``; the page says which frames it holds and how many it left out), the source
of every module version they run in, for each call in the window the positions where it is alive,
and the code of each node (what a search looks in); its script steps through them with the
terminal viewer's keys. Nothing is fetched: styles, script and data are inline (template
``templates/html_cinema.html.j2``).

Variables shown at a frame are its function's, as in the terminal viewer; a variable's values are
the bounded, redacted representations the recorder stored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from execscope.queries.cinema import Cinema, public
from execscope.queries.cinema_views import node_codes

DEFAULT_MAX_FRAMES = 5000
_FRAME_KEYS = ("seq", "kind", "function", "file", "line", "depth", "span_id", "node_id", "var", "value", "exception")


@dataclass(frozen=True, slots=True)
class Page:
    html: str
    first: int
    """Position of the first embedded frame."""
    frames: int
    total: int


def window(total: int, at: int, max_frames: int) -> tuple[int, int]:
    """[first, stop) of at most ``max_frames`` positions around ``at``: a quarter before it, the
    rest after (stepping forwards is the common case), shifted to fit the trace."""
    size = max(1, min(max_frames, total))
    first = max(0, min(at - size // 4, total - size))
    return first, first + size


def page_data(film: Cinema, at: int, max_frames: int = DEFAULT_MAX_FRAMES) -> dict[str, Any]:
    """What the page embeds: frames (locals deduplicated into ``states``), sources per code version
    and the calls of the window with the positions where each is on the stack."""
    first, stop = window(film.total, at, max_frames)
    frames: list[dict[str, Any]] = []
    states: list[dict[str, str]] = []
    state_ids: dict[str, int] = {}
    sources: dict[str, dict[str, Any]] = {}
    calls: dict[str, dict[str, Any]] = {}
    for depth, function, span_id, _ in film.stack_at(first):  # calls already running at the first frame
        calls[span_id] = {"depth": depth, "function": function, "first": first, "last": stop - 1}
    raised: dict[str, int] = {}
    for raw in film.frames(first, stop):
        f = public(raw)
        version = raw.get("_version", "")
        if version and version not in sources:
            lines = film.source_lines(version, f["file"])
            sources[version] = {"file": f["file"], "lines": lines or []}
        locals_json = json.dumps(f["locals"], sort_keys=True)
        if locals_json not in state_ids:
            state_ids[locals_json] = len(states)
            states.append(f["locals"])
        frame = {k: f[k] for k in _FRAME_KEYS if k in f}
        frame["version"] = version
        frame["state"] = state_ids[locals_json]
        p, span = f["seq"], f["span_id"]
        for span_id, depth in list(raised.items()):  # a call that raised is left once its caller runs on
            if span_id != span and f["depth"] <= depth:
                calls[span_id]["last"] = p - 1
                del raised[span_id]
        if f["kind"] == "call" and span not in calls:
            calls[span] = {"depth": f["depth"], "function": f["function"], "first": p, "last": stop - 1}
        elif f["kind"] == "return" and span in calls:
            calls[span]["last"] = p
        elif f["kind"] == "exception" and span in calls:
            raised[span] = f["depth"]
        frames.append(frame)
    codes = node_codes(film.store, sorted({f["node_id"] for f in frames if f["kind"] not in ("call", "return")}))
    return {"trace": film.trace_id, "total": film.total, "first": first, "at": at,
            "frames": frames, "states": states, "sources": sources, "calls": calls, "codes": codes}


def render(film: Cinema, at: int = 0, max_frames: int = DEFAULT_MAX_FRAMES) -> Page:
    """The page for ``film`` opened at position ``at``."""
    import jinja2

    from execscope.dashboards.grafana import HERE

    if not 0 <= at < film.total:
        raise IndexError(at)
    data = page_data(film, at, max_frames)
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(HERE / "templates")),
                             autoescape=jinja2.select_autoescape(["html", "j2"]), undefined=jinja2.StrictUndefined)
    # JSON inside <script>: no "</" can end the element early, no "<!--" can open a comment
    payload = json.dumps(data, ensure_ascii=False, separators=(",", ":"), default=str)
    payload = payload.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    html = env.get_template("html_cinema.html.j2").render(
        trace=film.trace_id, total=film.total, first=data["first"], count=len(data["frames"]), at=at,
        before=data["first"], after=film.total - data["first"] - len(data["frames"]), payload=payload)
    return Page(html, data["first"], len(data["frames"]), film.total)


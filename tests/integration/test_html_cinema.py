"""The HTML cinema (`execscope cinema TRACE --html FILE`) in headless Chromium (Debian's chromium,
driven by Playwright's Python package): keys step through the recording as the terminal viewer's do,
the marked line and the variables are the cinema's at every stop, nothing is fetched, and a page
holding part of a trace says what it left out."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from execscope.dashboards.html_cinema import window
from execscope.queries.cinema import Cinema, open_cinema
from execscope.storage.store import open_store
from tests.integration.recorded_app import Recording
from tests.integration.test_run_cli import cli

CHROMIUM = "/usr/bin/chromium"
SCREENSHOT = Path(__file__).resolve().parents[2] / "dashboards" / "cinema.png"

pytestmark = [pytest.mark.xdist_group("recording"),
              pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                 reason=f"{CHROMIUM} is not installed (Debian package chromium; .ci/run installs it)")]


def test_window_is_bounded_and_fits_the_trace() -> None:
    assert window(1_000_000, 500_000, 5000) == (498_750, 503_750)
    assert window(1_000_000, 10, 5000) == (0, 5000)
    assert window(1_000_000, 999_999, 5000) == (995_000, 1_000_000)
    assert window(30, 12, 5000) == (0, 30)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM,
                              args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        yield b
        b.close()


class Viewer:
    """A page of the HTML cinema and what it shows."""

    def __init__(self, browser: Any, path: Path) -> None:
        self.page = browser.new_page(viewport={"width": 1400, "height": 900})
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.goto(path.as_uri())

    def press(self, *keys: str) -> None:
        for key in keys:
            self.page.keyboard.press(key)

    def ask(self, key: str, answer: str) -> None:
        self.press(key)
        self.page.wait_for_selector("#prompt.open")
        self.page.keyboard.type(answer)
        self.press("Enter")

    @property
    def position(self) -> int:
        m = re.match(r"frame (\d+)/", self.page.inner_text("#where"))
        assert m, self.page.inner_text("#where")
        return int(m.group(1))

    @property
    def marked(self) -> tuple[int, str]:
        """The source line marked as current: (number, text)."""
        line = self.page.locator(".src.current")
        number = int(line.locator(".n").inner_text())
        return number, line.inner_text().split("▶", 1)[1]

    @property
    def variables(self) -> dict[str, str]:
        rows = self.page.locator("#vars tr").all()
        out = {}
        for row in rows:
            cells = row.locator("td").all()
            if len(cells) == 2:
                out[cells[0].inner_text()] = cells[1].inner_text()
        return out

    @property
    def status(self) -> str:
        return self.page.inner_text("#status")


def check_at(viewer: Viewer, film: Cinema, position: int) -> None:
    """The page shows the cinema's frame at ``position``: the marked line and the variables."""
    frame = film.frame(position)
    assert viewer.position == position
    number, text = viewer.marked
    assert (number, text) == (frame["line"], frame["source"]), (position, frame)
    assert viewer.variables == frame["locals"], position


def test_keys_step_through_the_recording(recorded_app: Recording, browser: Any, tmp_path: Path) -> None:
    html = tmp_path / "cinema.html"
    with open_store(recorded_app.store) as store:  # closed again before the CLI opens it
        film = open_cinema(store, recorded_app.trace)
        start = next(i for i in range(film.total) if film.frame(i)["function"] == "dash_app.fact")
    proc = cli("cinema", recorded_app.trace, "--store", recorded_app.store, "--html", str(html), "--at", str(start),
               cwd=recorded_app.root)
    with open_store(recorded_app.store) as store:
        film = open_cinema(store, recorded_app.trace)
        assert f"frames 0..{film.total - 1} of {film.total}" in proc.stderr
        assert not re.search(r"""(src|href)=["']?(https?:)?//""", html.read_text())  # self-contained
        viewer = Viewer(browser, html)

        def key(k: str, expected: Any, answer: str | None = None) -> None:
            here = viewer.position
            if answer is None:
                viewer.press(k)
            else:
                viewer.ask(k, answer)
            target = expected(here)
            if target is None:  # nowhere to go: the page stays and says so, as the terminal viewer does
                assert viewer.position == here and viewer.status.startswith("no "), viewer.status
            else:
                check_at(viewer, film, target)

        check_at(viewer, film, start)
        assert viewer.marked[1] == "def fact(n):" and viewer.variables == {"n": "4"}
        for _ in range(3):
            key("ArrowRight", lambda p: p + 1)
        assert viewer.marked[1] == "    r = n * fact(n - 1)"
        key("o", film.step_over)  # over the recursive call: r is written
        assert viewer.variables == {"n": "4", "r": "24"}
        key("ArrowLeft", lambda p: p - 1)  # back: the inner call returns, with its own variables
        assert viewer.variables == {"n": "3", "r": "6"}
        key("O", lambda p: film.step_over(p, False))
        key("u", film.step_out)
        key("e", lambda p: film.find(p, kind="exception"))  # risky(-2)'s ValueError, caught in its own frame
        assert "raised ValueError: neg" in viewer.status
        key("e", lambda p: film.find(p, kind="exception"))  # explode raises
        assert "raised RuntimeError: total too large: 42" in viewer.status
        key("e", lambda p: film.find(p, kind="exception"))  # the exception leaving main
        key("E", lambda p: film.find(p, False, kind="exception"))
        key("U", lambda p: film.step_out(p, False))  # back out of explode: main's line that called it
        key("W", lambda p: film.find(p, False, var="y"), "y")  # risky(-2) wrote y = -1
        assert viewer.variables == {"x": "-2", "y": "-1"}
        key("w", lambda p: film.find(p, var="total"), "total")
        assert viewer.variables["total"] == "42"
        key("l", lambda p: film.find(p, line=24) or film.find(p, False, line=24), "24")  # a worker thread's line
        assert viewer.marked == (24, "        s += i")
        assert viewer.page.locator("#calls tr").first.inner_text().split("\t")[1] == "dash_app.worker"
        key("g", lambda p: 0, "0")
        key("/", lambda p: film.find(p, text="ValueError"), "ValueError")
        key("?", lambda p: film.find(p, False, text="fact"), "fact")
        key("End", lambda p: film.total - 1)
        key("Home", lambda p: 0)
        viewer.press("End", "ArrowRight")
        assert "no further frame" in viewer.status
        viewer.page.screenshot(path=str(tmp_path / "cinema.png"))
        assert viewer.errors == [] and all(u.startswith("file:") for u in viewer.requests), viewer.requests


def test_a_page_of_a_long_trace_says_what_it_left_out(recorded_app: Recording, browser: Any, tmp_path: Path) -> None:
    html = tmp_path / "part.html"
    with open_store(recorded_app.store) as store:
        at = open_cinema(store, recorded_app.trace).total // 2
    cli("cinema", recorded_app.trace, "--store", recorded_app.store, "--html", str(html), "--at", str(at),
        "--max-frames", "20", cwd=recorded_app.root)
    with open_store(recorded_app.store) as store:
        film = open_cinema(store, recorded_app.trace)
        first, stop = window(film.total, at, 20)
        viewer = Viewer(browser, html)
        check_at(viewer, film, at)
        header = viewer.page.inner_text("#omitted")
        assert (f"frames {first}–{stop - 1} of {film.total}" in header
                and f"{first} before and {film.total - stop} after left out" in header), header
        assert viewer.page.locator("#list .fr").count() == 20
        viewer.press("End", "ArrowRight")
        assert f"frame {stop} is not on this page" in viewer.status and f"--at {stop}" in viewer.status
        check_at(viewer, film, stop - 1)


def test_readme_screenshot(recorded_app: Recording, browser: Any, tmp_path: Path) -> None:
    """The README's picture of the page (refreshed with EXECSCOPE_UPDATE_SCREENSHOT=1)."""
    html = tmp_path / "shot.html"
    with open_store(recorded_app.store) as store:
        film = open_cinema(store, recorded_app.trace)
        at = film.find(0, var="r")
    cli("cinema", recorded_app.trace, "--store", recorded_app.store, "--html", str(html), "--at", str(at),
        cwd=recorded_app.root)
    viewer = Viewer(browser, html)
    viewer.press("o")
    shot = tmp_path / "cinema.png"
    viewer.page.screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000
    if os.environ.get("EXECSCOPE_UPDATE_SCREENSHOT"):
        shutil.copyfile(shot, SCREENSHOT)
    assert SCREENSHOT.is_file(), "run with EXECSCOPE_UPDATE_SCREENSHOT=1 to save dashboards/cinema.png"

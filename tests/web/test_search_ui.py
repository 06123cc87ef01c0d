"""The gallery's search box and typed filters in a real Chromium, against a live server."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx
import pytest

from tests.search_files import write_searchable_ome_tiff

if TYPE_CHECKING:
    from pathlib import Path

    from playwright.sync_api import Page

pytestmark = pytest.mark.browser


def expect_cards(page: Page, expected: list[str]) -> None:
    """The gallery shows ``expected`` once it has them, and still after every search answered.

    Why both: the count alone is met by the previous search's cards while the next
    is in flight, and a late answer to an older search must not replace the newest.
    """
    page.wait_for_function(
        """(names) => JSON.stringify(
             [...document.querySelectorAll('.card .filename')].map((e) => e.innerText).sort()
           ) === JSON.stringify(names)""",
        arg=sorted(expected),
    )
    page.wait_for_load_state("networkidle")
    assert sorted(page.locator(".card .filename").all_inner_texts()) == sorted(expected)


def test_filter_box_searches_channels_objective_format_and_date(
    live_server: str, page: Page, tmp_path: Path
) -> None:
    files = [
        write_searchable_ome_tiff(
            tmp_path / "nuclei.ome.tif",
            channels=("DAPI", "GFP"),
            objective="Plan-Apochromat 63x/1.40 Oil",
            magnification=63,
            immersion="Oil",
            acquired="2025-03-14T10:00:00",
        ),
        write_searchable_ome_tiff(
            tmp_path / "embryo.ome.tif",
            channels=("mCherry",),
            objective="C-Apochromat 40x/1.2 W",
            magnification=40,
            immersion="Water",
            acquired="2025-06-02T08:30:00",
        ),
        write_searchable_ome_tiff(
            tmp_path / "beads.ome.tif",
            channels=("Cy5",),
            objective="EC Plan-Neofluar 10x/0.30",
            magnification=10,
            immersion="Air",
            acquired="2024-11-20T16:00:00",
        ),
    ]
    with httpx.Client(base_url=live_server, timeout=60) as client:
        for path in files:
            with path.open("rb") as fh:
                response = client.post("/api/images/upload", files={"file": (path.name, fh)})
            assert response.status_code == 201, response.text

    searches: list[str] = []
    page.on("request", lambda r: searches.append(r.url) if "/api/images/search" in r.url else None)
    page.goto(f"{live_server}/")
    expect_cards(page, ["beads.ome.tif", "embryo.ome.tif", "nuclei.ome.tif"])

    page.fill("#filter-channel", "dapi")
    expect_cards(page, ["nuclei.ome.tif"])
    assert any("channel=dapi" in url for url in searches)

    page.click("#filter-clear")
    page.fill("#filter", "mcherry")  # free text finds channel names too
    expect_cards(page, ["embryo.ome.tif"])

    page.click("#filter-clear")
    page.fill("#filter-objective", "63x")
    expect_cards(page, ["nuclei.ome.tif"])

    page.click("#filter-clear")
    page.fill("#filter-after", "2025-01-01")
    page.fill("#filter-before", "2025-12-31")
    expect_cards(page, ["embryo.ome.tif", "nuclei.ome.tif"])
    with page.expect_response(lambda r: "format=OME-TIFF" in r.url) as answer:
        page.select_option("#filter-format", "OME-TIFF")
    assert answer.value.json()["total"] == 2
    expect_cards(page, ["embryo.ome.tif", "nuclei.ome.tif"])
    page.fill("#filter", "neofluar")
    page.locator("#gallery-empty").wait_for()
    assert page.locator(".card").count() == 0
    empty = page.inner_text("#gallery-empty")
    assert "“neofluar”" in empty and "format OME-TIFF" in empty and "from 2025-01-01" in empty


SCOPE = {
    "objective": "Plan-Apochromat 63x/1.40 Oil",
    "magnification": 63,
    "immersion": "Oil",
    "acquired": "2025-03-14T10:00:00",
}

# Holds back the answer to an unfiltered search while window.__holdUnfiltered is set, and
# flags window.__staleDelivered once that late answer has been handed to the page.
HOLD_UNFILTERED = """
const realFetch = window.fetch;
window.fetch = async (...args) => {
  const url = String(args[0] && args[0].url ? args[0].url : args[0]);
  const response = await realFetch(...args);
  if (window.__holdUnfiltered && url.includes("/api/images/search") && !url.includes("channel=")) {
    await new Promise((resolve) => setTimeout(resolve, 1500));
    setTimeout(() => { window.__staleDelivered = true; }, 300);
  }
  return response;
};
"""


def test_a_late_answer_to_an_older_search_never_replaces_the_newest(
    live_server: str, page: Page, tmp_path: Path
) -> None:
    files = [
        write_searchable_ome_tiff(tmp_path / f"{name}.ome.tif", channels=(channel,), **SCOPE)
        for name, channel in (("nuclei", "DAPI"), ("embryo", "mCherry"))
    ]
    with httpx.Client(base_url=live_server, timeout=60) as client:
        for path in files:
            with path.open("rb") as fh:
                response = client.post("/api/images/upload", files={"file": (path.name, fh)})
            assert response.status_code == 201, response.text
    page.add_init_script(HOLD_UNFILTERED)
    page.goto(f"{live_server}/")
    expect_cards(page, ["embryo.ome.tif", "nuclei.ome.tif"])

    page.evaluate("window.__holdUnfiltered = true")
    page.click("#filter-clear")  # an unfiltered search, whose answer comes late
    page.fill("#filter-channel", "dapi")  # the newest search, answered at once
    expect_cards(page, ["nuclei.ome.tif"])
    page.wait_for_function(
        "() => window.__staleDelivered === true"
    )  # a function: no eval under the CSP
    assert page.locator(".card .filename").all_inner_texts() == ["nuclei.ome.tif"]

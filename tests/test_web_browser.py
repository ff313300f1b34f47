"""The studio page end to end in headless Chromium: pick a genre, generate, open a poster, download it.

POSTERGEN_SCREENSHOT=docs/img/studio.png also saves a screenshot of the page (the README's);
POSTERGEN_SCREENSHOT_RUNS=PATH takes that screenshot over another run folder (a longer run looks
better than the test's 2-step one). The test itself always uses the tiny fixture run.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from postergen.web.app import create_app, running

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

# Playwright waits on conditions (a selector, a function) up to a deadline; this one bounds a page that
# never gets there, far beyond a slow one on a busy machine (Playwright's own default is 30 s).
DEADLINE_MS = 180_000

pytestmark = [pytest.mark.slow,  # a real server and a real browser
              pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing (apt-get install chromium)")]


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, timeout=DEADLINE_MS)
        yield browser
        browser.close()


def open_studio(browser, base: str):
    page = browser.new_page(viewport={"width": 1440, "height": 900}, accept_downloads=True)
    page.set_default_timeout(DEADLINE_MS)
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(base)
    page.wait_for_selector("body[data-ready=true]")
    return page, errors


def set_range(page, selector: str, value: int) -> None:
    page.locator(selector).evaluate("(e, v) => { e.value = v; e.dispatchEvent(new Event('input')); }", str(value))


def generate(page, genres: list[str], seed: int, n: int) -> None:
    for genre in genres:
        page.click(f"#genres .chip[data-genre='{genre}']")
    page.fill("#seed", str(seed))
    set_range(page, "#count", n)
    page.click("#generate")
    page.wait_for_function(f"document.querySelectorAll('#grid .poster img').length === {n} && "
                           "[...document.querySelectorAll('#grid .poster img')].every(i => i.complete && i.naturalWidth > 0)")


def test_pick_generate_open_download(browser, tiny_run: Path, tmp_path: Path):
    with running(create_app(tiny_run.parent)) as base:
        page, errors = open_studio(browser, base)
        assert page.locator("#run option").all_inner_texts() == ["run"]
        generate(page, ["horror"], seed=3, n=6)
        assert page.locator("#genres .chip[data-genre='horror']").get_attribute("aria-pressed") == "true"
        assert page.locator("#grid .poster .seed").all_inner_texts() == [f"#{s}" for s in range(3, 9)]
        assert page.locator("#grid .poster img").first.evaluate("i => i.naturalWidth") == 32

        page.click("#grid .poster >> nth=1")
        page.wait_for_selector("#viewer[open]")
        assert page.inner_text("#viewer-title") == "Seed 4"
        assert "horror" in page.inner_text("#viewer-meta")
        with page.expect_download() as download:
            page.click("#download")
        saved = tmp_path / download.value.suggested_filename
        download.value.save_as(saved)
        assert saved.name == "postergen-run-horror-seed4.png"
        image = Image.open(io.BytesIO(saved.read_bytes()))
        assert image.format == "PNG" and image.size == (32, 32)
        assert image.text["postergen:seed"] == "4" and image.text["postergen:ai_generated"] == "true"

        page.click("#as-a")  # the viewer's seed starts a walk
        assert page.input_value("#seed-a") == "4"
        page.fill("#frames", "5")
        page.click("#interp-go")
        page.wait_for_function("document.querySelectorAll('#strip img').length === 5")
        set_range(page, "#interp-slider", 4)
        assert page.inner_text("#frame-caption") == "t = 1.00"

        page.click("#tab-training")
        page.wait_for_function("document.getElementById('samples-img').naturalWidth > 0")
        assert "Step 2 of 2" in page.inner_text("#progress-text")
        assert not errors, errors
        page.close()


def test_the_page_takes_its_limits_from_the_api(browser, tiny_run: Path):
    from postergen.web.app import LIMITS

    with running(create_app(tiny_run)) as base:
        page, errors = open_studio(browser, base)
        bounds = {name: page.get_attribute(f"#{name}", "max") for name in ("count", "frames", "seed", "seed-a")}
        page.close()
    assert bounds == {"count": str(LIMITS["posters"]), "frames": str(LIMITS["frames"]),
                      "seed": str(LIMITS["seed"]), "seed-a": str(LIMITS["seed"])}
    assert not errors, errors


def test_screenshot(browser, tiny_run: Path, tmp_path: Path):
    """The page as a person sees it: the viewport's size, and posters in it, not a blank or broken page.
    Saved to POSTERGEN_SCREENSHOT when set (the README's picture), else to a temporary file."""
    root = Path(os.environ.get("POSTERGEN_SCREENSHOT_RUNS") or tiny_run)
    with running(create_app(root)) as base:
        page, errors = open_studio(browser, base)
        generate(page, ["horror"], seed=int(os.environ.get("POSTERGEN_SCREENSHOT_SEED", "0")), n=24)
        page.wait_for_function(  # the cards' fade-in has ended, and the grid is no longer dimmed for loading
            "!document.getElementById('grid').classList.contains('loading') && [...document.querySelectorAll("
            "'#grid .poster')].every(p => p.getAnimations().every(a => a.playState === 'finished'))")
        out = Path(os.environ.get("POSTERGEN_SCREENSHOT") or tmp_path / "studio.png")
        out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(out))
        box = page.locator("#grid").bounding_box()
        page.close()
    assert not errors, errors
    shot = Image.open(out).convert("RGB")
    assert shot.size == (1440, 900)
    pixels = np.asarray(shot, dtype=np.float32)
    assert len(np.unique(pixels.reshape(-1, 3)[::7], axis=0)) > 500  # text, controls and posters, not a flat page
    # the poster grid holds the generated pictures: varied pixels where the grid is drawn
    x0, y0 = int(box["x"]), int(box["y"])
    grid = pixels[y0:min(900, y0 + int(box["height"])), x0:x0 + int(box["width"])]
    assert grid.size and grid.std() > 20

"""The web pages in a real browser: Debian's chromium driven by Playwright, against uvicorn on 127.0.0.1.

Needs ``/usr/bin/chromium`` (``apt-get install chromium chromium-driver``); Playwright's own
browser downloads are never used.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
CHROMIUM = Path(os.environ.get("ATTNGAN_CHROMIUM", "/usr/bin/chromium"))
if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} is absent: install Debian's chromium to run the browser tests", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")

from attngan.server import ServerSettings, create_app  # noqa: E402

from .test_server_support import PNG_MAGIC, LiveServer, load_tiny_pipeline  # noqa: E402

TIMEOUT_MS = 20_000


@pytest.fixture(scope="module")
def server(tiny_model_dir):
    app = create_app(load_tiny_pipeline(tiny_model_dir), ServerSettings(max_images=4, batch_wait_ms=1))
    with LiveServer(app) as live:
        yield live


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-dev-shm-usage"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1200, "height": 900}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on("console", lambda msg: problems.append(f"console: {msg.text}")
            if msg.type == "error" and "status of 4" not in msg.text else None)  # 4xx replies are expected
    page.on("request", lambda req: problems.append(f"off-host request: {req.url}")
            if not req.url.startswith(("http://127.0.0.1", "data:", "blob:")) else None)
    yield page
    context.close()
    assert not problems, problems


def test_generate_page_shows_stages_and_attention(server, page, tmp_path):
    page.goto(server.url + "/")
    page.fill("#caption", "a small red circle on the left zebra")
    page.fill("#seed", "7")
    page.fill("#count", "2")
    page.click("#generate")
    page.wait_for_selector(".image-card")
    images = page.locator(".stage-image")
    assert images.count() == 2 * 3
    assert all(images.nth(i).evaluate("img => img.complete && img.naturalWidth > 0") for i in range(images.count()))
    assert page.inner_text("#meta").endswith(" · seed 7")  # untruncated noise: no truncation to state
    chips = page.locator(".word-chip[data-index]")
    assert chips.all_inner_texts() == ["a", "small", "red", "circle", "on", "the", "left"]
    dropped = page.locator(".word-chip.dropped")
    assert dropped.all_inner_texts() == ["zebra"] and "zebra" in page.inner_text("#dropped-note")

    overlays = page.locator(".attention-overlay")
    assert overlays.count() == 6 and not any(overlays.nth(i).is_visible() for i in range(6))
    chips.nth(2).hover()  # "red": its map shows on stages 2 and 3 of both images
    page.wait_for_selector(".attention-overlay:visible")
    assert sum(overlays.nth(i).is_visible() for i in range(6)) == 4
    page.hover("#caption")
    page.wait_for_selector(".attention-overlay:not([hidden])", state="detached")  # leaving hides them
    chips.nth(3).click()  # clicking pins "circle"
    page.hover("#caption")
    assert chips.nth(3).get_attribute("aria-pressed") == "true"
    assert sum(overlays.nth(i).is_visible() for i in range(6)) == 4
    page.screenshot(path="/tmp/attngan_page_generate.png", full_page=True)

    with page.expect_download() as info:
        page.click("#export")
    lines = Path(info.value.path()).read_text().splitlines()
    assert len(lines) == 2
    record = json.loads(lines[0])
    assert record["caption"].startswith("a small red") and record["dropped"] == ["zebra"] and record["seed"] == 7
    assert {"tokens", "model", "hash", "settings", "image_png_base64"} <= set(record)
    assert base64.b64decode(record["image_png_base64"]).startswith(PNG_MAGIC)
    with page.expect_download() as info:
        page.locator(".download-image").first.click()
    assert Path(info.value.path()).read_bytes().startswith(PNG_MAGIC)


def test_generate_page_shows_api_errors(server, page):
    page.goto(server.url + "/")
    page.fill("#caption", "zebra quokka")
    page.click("#generate")
    page.wait_for_selector("#error:not([hidden])")
    assert "zebra" in page.inner_text("#error")
    page.fill("#caption", "   ")
    page.click("#generate")
    page.wait_for_selector("#error:has-text('caption')")


def test_a_page_that_cannot_read_the_model_says_so_and_still_draws(server, page):
    page.route("**/v1/model", lambda route: route.fulfill(status=404, body="{}"))
    page.goto(server.url + "/")
    page.wait_for_selector("#error:has-text('could not describe its model (HTTP 404)')")
    page.fill("#caption", "a red circle")
    page.click("#generate")
    page.wait_for_selector(".image-card")
    assert page.locator("#error").is_hidden()


STEPS = ("#step-text", "#step-ca", "#step-stage1", "#step-refine", "#step-damsm")


def test_explainer_explains_every_step_before_any_run(server, page):
    explained: list[str] = []
    page.on("request", lambda req: explained.append(req.url) if "/v1/explain" in req.url else None)
    page.goto(server.url + "/explain")
    page.wait_for_selector("#facts-stage1:not([hidden])")  # the model's own sizes, from GET /v1/model
    for section in STEPS:  # every step: its title, what it does, and a note that values come with a run
        step = page.locator(section)
        assert step.is_visible() and step.locator("h2").inner_text().strip()
        assert len(step.locator("p").first.inner_text()) > 150, section
        assert step.locator(".pending").is_visible() and step.locator(".live").is_hidden(), section
    assert page.locator("#overview .flow a").count() == 5
    # the tiny model: word features of 16 numbers, c and z of 8, stages 16 -> 32 -> 64 px
    assert "features of 16 numbers" in page.inner_text("#facts-text")
    assert page.inner_text("#facts-ca") == "This model: c has 8 numbers and the noise z 8."
    assert "16×16 px" in page.inner_text("#facts-stage1") and "32×32 px → 64×64 px" in page.inner_text("#arch-refine")
    assert "image encoder" in page.inner_text("#facts-damsm")
    assert not explained


def test_explain_page_renders_every_section(server, page):
    page.goto(server.url + "/explain")
    page.fill("#caption", "a big blue square on the top")
    page.fill("#seed", "3")
    page.click("#explain")
    page.wait_for_selector("#step-damsm .live:not([hidden])")
    for section in STEPS:
        assert page.locator(section + " .live").is_visible() and page.locator(section + " .pending").is_hidden()
    page.wait_for_function("document.querySelector('#text-heatmap').naturalWidth > 0")
    assert page.locator("#text-tokens .word-chip").count() == 7
    assert page.locator("#stage1 .stage-image").count() == 1
    assert page.locator("#refine .refine-stage").count() == 2
    assert page.locator("#refine .attention-overlay").count() == 2 * 7
    assert page.locator("#damsm .attention-overlay").count() == 7
    drawn = page.evaluate("""() => ['ca-mu', 'ca-sigma', 'ca-c', 'text-sentence'].every(id => {
        const c = document.getElementById(id); const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        return d.some(v => v !== 0); })""")
    assert drawn
    page.screenshot(path="/tmp/attngan_page_explain.png", full_page=True)


EXAMPLES = ["a big blue square on the left", "a tiny red circle on the top", "zebra okapi"]


@pytest.fixture(scope="module")
def examples_server(tmp_path_factory):
    """The tiny model with example captions in its folder (the last has no known word) and its own
    default truncation 0.5 and candidates 3."""
    from attngan.hub import save_pretrained

    from .conftest import make_tiny_bundle

    bundle = make_tiny_bundle()
    bundle.metadata["example_captions"] = EXAMPLES
    bundle.metadata["truncation"] = 0.5
    bundle.metadata["candidates"] = 3
    folder = save_pretrained(bundle, tmp_path_factory.mktemp("examples") / "model")
    app = create_app(load_tiny_pipeline(folder), ServerSettings(max_images=4, batch_wait_ms=1))
    with LiveServer(app) as live:
        yield live


def test_example_captions_fill_the_placeholder_and_buttons(examples_server, page):
    page.goto(examples_server.url + "/")
    page.wait_for_selector("#examples:not([hidden])")
    buttons = page.locator("#examples button.example")
    assert buttons.all_inner_texts() == EXAMPLES[:2]  # an example the model cannot read is not offered
    assert page.get_attribute("#caption", "placeholder") == EXAMPLES[0]
    buttons.nth(1).click()  # an example button draws its caption at once
    page.wait_for_selector(".image-card")
    assert page.input_value("#caption") == EXAMPLES[1]
    assert page.locator(".word-chip[data-index]").all_inner_texts() == EXAMPLES[1].split()

    page.goto(examples_server.url + "/explain")
    page.wait_for_selector("#examples:not([hidden])")
    assert page.get_attribute("#caption", "placeholder") == EXAMPLES[0]
    page.locator("#examples button.example").nth(1).click()
    page.wait_for_selector("#step-text .live:not([hidden])")
    assert page.input_value("#caption") == EXAMPLES[1]
    assert page.locator("#text-tokens .word-chip").all_inner_texts() == EXAMPLES[1].split()


def test_a_fresh_page_draws_the_example_it_shows(examples_server, page):
    page.goto(examples_server.url + "/")
    page.click("#generate")  # at once, on an empty box: the example shown in grey is drawn
    page.wait_for_selector(".image-card")
    assert page.input_value("#caption") == EXAMPLES[0] and page.locator("#error").is_hidden()
    assert page.locator(".word-chip[data-index]").all_inner_texts() == EXAMPLES[0].split()
    images = page.locator(".stage-image")
    assert images.count() == 2 * 3
    assert all(images.nth(i).evaluate("img => img.complete && img.naturalWidth > 0") for i in range(images.count()))
    assert page.input_value("#seed") == ""  # an empty seed stays empty: the next press draws new images
    assert page.inner_text("#meta").endswith(" · truncation 0.5 · best of 3")  # the model's own, as drawn

    page.fill("#caption", EXAMPLES[1])
    page.press("#caption", "Enter")  # Enter draws too
    page.wait_for_selector(".word-chip[data-index]:text-is('tiny')")
    seed = page.get_attribute(".image-card", "data-seed")
    final = page.locator(".image-card").first.locator(".stage-image").last.get_attribute("src")
    page.click("#explain-link")  # the explainer opens on image 1: same caption, same seed, same image
    page.wait_for_selector("#step-text .live:not([hidden])")
    assert page.input_value("#caption") == EXAMPLES[1] and page.input_value("#seed") == seed
    assert page.locator("#refine .refine-stage").last.locator(".stage-image").first.get_attribute("src") == final

    page.goto(examples_server.url + "/explain")
    page.wait_for_selector("#facts-damsm:not([hidden])")  # before a run: how this model samples
    assert "scaled by 0.5 (truncation)" in page.inner_text("#facts-ca")
    assert "drawn 3 times" in page.inner_text("#facts-damsm") and "best of 3" in page.inner_text("#facts-damsm")
    page.press("#caption", "Enter")  # the explainer's empty box explains its example
    page.wait_for_selector("#step-text .live:not([hidden])")
    assert page.input_value("#caption") == EXAMPLES[0] and page.locator("#error").is_hidden()
    assert page.locator("#text-tokens .word-chip").all_inner_texts() == EXAMPLES[0].split()


def test_without_examples_the_page_keeps_a_neutral_placeholder(server, page):
    page.goto(server.url + "/")
    page.wait_for_selector("#status:text-matches('^Model ')")  # a selector: the page's CSP forbids eval
    assert page.locator("#examples").is_hidden()
    assert page.get_attribute("#caption", "placeholder") == "Describe the image to draw"
    assert "bird" not in page.content()

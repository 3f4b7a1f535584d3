"""The viewer (OHIF, served by the portal at /viewer/) in a real Chromium on the live server, reading a
catalogued CT study through the portal's own /dicomweb/: the image is drawn, scrolling moves through the
series, window/level changes the pixels, two series stand side by side, and a 360 px wide screen still
shows the image."""
import re
import time

import pytest
from PIL import ImageStat
from playwright.sync_api import expect

from tests.viewer.conftest import (
    PHONE,
    TIMEOUT_MS,
    lit_share,
    logged_in,
    open_study,
    overlay_text,
    pane,
    shown_image,
    viewport_pixels,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def brightness(image) -> float:
    return ImageStat.Stat(image).mean[0]


def changed_image(page, before):
    """The first viewport's pixels once they differ from `before` (the canvas redraws after the overlay
    changes); bounded by TIMEOUT_MS, each screenshot taking its own time."""
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    while True:
        image = viewport_pixels(page)
        if abs(brightness(image) - brightness(before)) > 10 or time.monotonic() > deadline:
            return image


def test_it_shows_the_ct_image_scrolls_the_series_and_window_level_changes_it(context_for, live_server, ct_study):
    page = logged_in(context_for(), live_server, ct_study["alice"])
    open_study(page, live_server, ct_study["study"]["StudyInstanceUID"])
    before = shown_image(page)
    assert lit_share(before) > 0.15, "the viewport stayed blank"
    assert overlay_text(page, "Instance Number") == "I:1(1/6)"
    assert overlay_text(page, "Window Level") == "W:400L:40"  # the CT's own window

    canvas = page.locator("canvas.cornerstone-canvas").first
    box = canvas.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.wheel(0, 120)
    expect(pane(page).locator('[title="Instance Number"]')).to_contain_text("(2/6)", timeout=TIMEOUT_MS)

    # The active primary tool is window/level: a drag right and down widens the window and raises the level.
    page.mouse.down()
    page.mouse.move(x + 150, y + 120, steps=10)
    page.mouse.up()
    window_level = pane(page).locator('[title="Window Level"]')
    expect(window_level).not_to_have_text(re.compile(r"W:\s*400\s*L:\s*40$"), timeout=TIMEOUT_MS)
    after = changed_image(page, before)
    assert abs(brightness(after) - brightness(before)) > 10, (brightness(before), brightness(after))
    assert lit_share(after) > 0.15  # still an image, drawn in another window


def test_two_series_side_by_side(context_for, live_server, ct_study):
    page = logged_in(context_for(), live_server, ct_study["alice"])
    open_study(page, live_server, ct_study["study"]["StudyInstanceUID"], hangingProtocolId="@ohif/mnGrid")
    left, right = shown_image(page, 0), shown_image(page, 1)
    assert lit_share(left) > 0.15 and lit_share(right) > 0.15
    labels = page.locator('[data-cy="viewport-pane"]').all_inner_texts()
    assert "series 1" in labels[0] and "series 2" in labels[1]
    first, second = (page.locator("canvas.cornerstone-canvas").nth(i).bounding_box() for i in (0, 1))
    assert second["x"] >= first["x"] + first["width"] - 1  # beside it, not on top of it


def test_a_phone_sized_screen_shows_the_image(context_for, live_server, ct_study):
    page = logged_in(context_for(PHONE), live_server, ct_study["alice"])
    open_study(page, live_server, ct_study["study"]["StudyInstanceUID"])
    image = shown_image(page)
    assert lit_share(image) > 0.15
    box = page.locator("canvas.cornerstone-canvas").first.bounding_box()
    assert box["width"] >= 0.8 * PHONE["width"], box  # the image gets the screen, not a sliver beside panels
    assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"] + 1

"""The viewer in a real headless Chromium (Debian's, through Playwright; one browser for the folder) on
the live server, reading a CT study through the portal's own /dicomweb/: two series of 128x128 CT slices,
catalogued as alice's retrieved files; bob is a second account that holds nothing of hers."""
import io
import time

import pytest
from PIL import Image

from apps.dicom.demo.synthetic import write_dataset
from tests.browser.conftest import browser  # noqa: F401  (one Chromium for the folder)

# OHIF's first load parses ~20 MB of script on a shared 2-core machine: a generous bound, not a sleep.
TIMEOUT_MS = 60_000
PHONE = {"width": 360, "height": 740}


@pytest.fixture
def context_for(browser, request, tmp_path):  # noqa: F811 (the imported fixture)
    """new(viewport) -> a fresh browser context (cookies, storage); a screenshot of each page on failure."""
    contexts = []

    def new(viewport=None):
        context = browser.new_context(viewport=viewport or {"width": 1280, "height": 800})
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        return context

    yield new
    failed = getattr(request.node, "report_call", None)
    for n, context in enumerate(contexts):
        for m, tab in enumerate(context.pages):
            if failed is not None and failed.failed:
                shot = tmp_path / f"failure-{n}-{m}.png"
                tab.screenshot(path=str(shot))
                print(f"screenshot of the failed page: {shot}")
        context.close()


@pytest.fixture(scope="module")
def ct_files(tmp_path_factory):
    downloads = tmp_path_factory.mktemp("viewer") / "downloads"
    manifest = write_dataset(downloads / "LK" / "alice", patients=1, studies=1, series=2, instances=6, rows=128,
                             cols=128, modalities=("CT",), seed=21, id_prefix="VWR", first_date="2024-02-01")
    return downloads, manifest["studies"][0]


@pytest.fixture
def ct_study(ct_files, settings, django_user_model):
    """alice's CT study, catalogued as retrieved; alice and bob are staff accounts that log in to the admin."""
    from apps.catalog.filing import catalog_files

    downloads, study = ct_files
    settings.DOWNLOADS_DIR = downloads
    users = {name: django_user_model.objects.create_user(username=name, password=f"{name}-pass-123", is_staff=True)
             for name in ("alice", "bob")}
    assert catalog_files(sorted(downloads.rglob("*.dcm")), source="retrieved", owner=users["alice"]) == 12
    return {"study": study, **users}


def logged_in(context, live_server, user):
    page = context.new_page()
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", user.username)
    page.fill("#id_password", f"{user.username}-pass-123")
    page.click("input[type=submit]")
    page.wait_for_selector("#user-tools")
    return page


def open_study(page, live_server, uid: str, **params):
    query = "&".join([f"StudyInstanceUIDs={uid}", *(f"{k}={v}" for k, v in params.items())])
    page.goto(f"{live_server.url}/viewer/?{query}")


def viewport_pixels(page, index: int = 0) -> Image.Image:
    """What the n-th viewport's canvas shows, as the screen has it (the canvas is WebGL: read the screen)."""
    canvas = page.locator("canvas.cornerstone-canvas").nth(index)
    return Image.open(io.BytesIO(canvas.screenshot())).convert("L")


def lit_share(image: Image.Image, threshold: int = 40) -> float:
    """The share of pixels brighter than near-black."""
    histogram = image.histogram()
    return sum(histogram[threshold:]) / max(1, sum(histogram))


def wait_for_image(page, index: int = 0):
    """Until the n-th viewport shows an image: a fifth of it or more lit (the phantom's body)."""
    page.wait_for_function(
        """index => {
            const canvases = document.querySelectorAll('canvas.cornerstone-canvas');
            return canvases.length > index && canvases[index].width > 0;
        }""", arg=index)
    page.wait_for_function(
        """index => {
            const vp = document.querySelectorAll('[data-cy="viewport-pane"], .viewport-wrapper')[index];
            return !vp || !vp.querySelector('.loading-indicator, [data-cy="loading-indicator"]');
        }""", arg=index)


def pane(page, index: int = 0):
    return page.locator('[data-cy="viewport-pane"]').nth(index)


def shown_image(page, index: int = 0, min_lit: float = 0.15) -> Image.Image:
    """The n-th viewport's pixels once it shows an image: its overlay names the instance and a fifth or so
    of it is lit (the phantom's body). Each screenshot takes its time; the loop is bounded by TIMEOUT_MS."""
    overlay = pane(page, index).locator('[title="Instance Number"]')
    overlay.wait_for()
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    while True:
        image = viewport_pixels(page, index)
        if lit_share(image) >= min_lit or time.monotonic() > deadline:
            return image


def overlay_text(page, title: str, index: int = 0) -> str:
    return "".join(pane(page, index).locator(f'[title="{title}"]').inner_text().split())

"""The phone page in a real headless Chromium at a 360 px phone viewport: sign in, fill the form,
attach two photos, send to the real Orthanc, see success and the form cleared; the button stays
disabled without a patient ID; a refusal is shown in the seed's words; the PWA files work."""
import pytest

from apps.servers.models import DicomServer
from tests.browser.conftest import CHROMIUM_ARGS, TIMEOUT_MS  # noqa: F401
from tests.photos import images
from tests.photos.conftest import destination, may_send_photos, photo_settings  # noqa: F401  (shared fixtures)

pytestmark = [pytest.mark.browser, pytest.mark.orthanc]
PHONE = {"viewport": {"width": 360, "height": 740}, "device_scale_factor": 2, "is_mobile": True, "has_touch": True}
TECH, TECH_PASSWORD = "ward-nurse", "ward-pass-123"


@pytest.fixture
def phone(browser, live_server, django_user_model, destination):  # noqa: F811
    """A phone-sized page signed in to /photos/ through its own login form, as a user who is not staff."""
    may_send_photos(django_user_model.objects.create_user(username=TECH, password=TECH_PASSWORD))
    context = browser.new_context(**PHONE)
    context.set_default_timeout(TIMEOUT_MS)
    tab = context.new_page()
    tab.goto(f"{live_server.url}/photos/")
    assert "/photos/login/" in tab.url  # anonymous: the login page first
    tab.fill("#id_username", TECH)
    tab.fill("#id_password", TECH_PASSWORD)
    tab.click("button[type=submit]")
    tab.wait_for_selector("#photo-form")
    yield tab
    context.close()


@pytest.fixture
def two_photos(tmp_path):
    return [images.rotated_jpeg(tmp_path / "wound.jpg"), images.large_png_with_alpha(tmp_path / "chart.png")]


def test_fill_attach_two_send_success_and_the_form_is_cleared(phone, two_photos, empty_orthanc):
    send = phone.locator("#send")
    assert send.is_disabled()
    phone.set_input_files("#gallery", [str(p) for p in two_photos])
    assert phone.locator("#thumbnails li").count() == 2
    assert send.is_disabled()  # photos but no patient ID
    phone.fill("#patientName", "王^大明")
    phone.fill("#patientId", "  ")
    assert send.is_disabled()  # blanks are no patient ID
    phone.fill("#patientId", "A123456")
    phone.fill("#birthDate", "1990-01-15")
    phone.select_option("#sex", "M")
    phone.fill("#examDescription", "Wound day 3")
    assert send.is_enabled()
    assert send.bounding_box()["height"] >= 48  # a thumb-sized target
    assert phone.evaluate("document.documentElement.scrollWidth") <= 360  # no sideways scrolling
    assert phone.locator("#server-field").is_hidden()  # one server: no picker

    send.click()
    phone.wait_for_selector("#message.success")
    assert "Sent: 2 photos" in phone.text_content("#message")
    assert phone.input_value("#patientId") == "" and phone.input_value("#patientName") == ""
    assert phone.locator("#thumbnails li").count() == 0 and send.is_disabled()

    stored = empty_orthanc.find("Instance", {"PatientID": "A123456"})
    assert len(stored) == 2
    study = empty_orthanc.find("Study", {"PatientID": "A123456"})[0]
    assert study["PatientMainDicomTags"]["PatientName"] == "王^大明"
    assert study["MainDicomTags"]["StudyDescription"] == "Wound day 3"


def test_remove_a_thumbnail_then_the_pacs_refuses_and_the_form_stays(phone, two_photos, destination):  # noqa: F811
    DicomServer.objects.create(name="SECOND", ae_title="SECOND", host="127.0.0.1", port=104)
    phone.reload()
    assert phone.locator("#server option").all_text_contents() == ["PHOTOPACS", "SECOND"]
    assert phone.input_value("#server") == "PHOTOPACS"  # the configured destination first
    phone.set_input_files("#gallery", [str(p) for p in two_photos])
    phone.click("#thumbnails li:first-child .remove")
    assert phone.locator("#thumbnails li").count() == 1
    DicomServer.objects.filter(pk=destination.pk).update(ae_title="NOT_SPARE")
    phone.fill("#patientId", "B7")
    phone.click("#send")
    phone.wait_for_selector("#message.error")
    assert "PACS 拒絕連線或傳輸失敗" in phone.text_content("#message")
    assert phone.input_value("#patientId") == "B7" and phone.locator("#thumbnails li").count() == 1


def test_theme_manifest_and_a_service_worker_that_caches_only_the_shell(phone, live_server):
    before = phone.get_attribute("html", "data-theme")
    phone.click("#theme-toggle")
    assert phone.get_attribute("html", "data-theme") != before
    manifest = phone.evaluate("fetch('/photos/manifest.webmanifest').then(r => r.json())")
    assert manifest["display"] == "standalone" and manifest["start_url"] == "/photos/"
    assert {icon["sizes"] for icon in manifest["icons"]} == {"192x192", "512x512"}
    scope = phone.evaluate("navigator.serviceWorker.ready.then(r => r.scope)")
    assert scope == f"{live_server.url}/photos/"
    cached = phone.evaluate("""caches.keys().then(keys => Promise.all(keys.map(k => caches.open(k)
        .then(c => c.keys())))).then(lists => lists.flat().map(r => new URL(r.url).pathname))""")
    assert cached and all(path.startswith("/static/photos/") for path in cached), cached

"""apps/viewer/site.py lays out OHIF's dist for /viewer/: on a small dist shaped like the package's, and on the
installed package itself (what `make viewer` made)."""
import gzip

import pytest
from django.conf import settings

from apps.viewer.site import SiteError, build

INDEX = ('<!doctype html><html><head><meta charset="UTF-8"><script>window.PUBLIC_URL="/"</script>'
         '<link rel="manifest" href="/manifest.json"><script src="/app-config.js"></script>'
         '<script type="module" src="/init-service-worker.js"></script>'
         '<script>function browserImportFunction(n){return import(n)}</script></head>'
         '<body><script defer src="/app.bundle.1.js"></script><a href="//elsewhere.example/">x</a></body></html>')


@pytest.fixture
def dist(tmp_path):
    root = tmp_path / "dist"
    (root / "ort").mkdir(parents=True)
    (root / "ort" / "big.wasm").write_bytes(b"\0" * 10)
    (root / "index.html").write_text(INDEX)
    (root / "app.bundle.1.js").write_text('(() => {\n__webpack_require__.p = "/";\n})();')
    (root / "app.css").write_text("@font-face{src:url(/f.woff2)} a{background:url(//cdn.example/x.png)}")
    (root / "2.bundle.js").write_text("var x = 1;\n" * 500)
    (root / "sw.js").write_text("importScripts('https://cdn.example/workbox.js')")
    return root


def test_the_dist_is_rewritten_for_the_viewer_path(dist, tmp_path):
    done = build(dist, tmp_path / "site")
    site = tmp_path / "site"
    assert done["patched"] == 1
    assert '__webpack_require__.p = "/viewer/"' in (site / "app.bundle.1.js").read_text()
    assert (site / "app.css").read_text() == ("@font-face{src:url(/viewer/f.woff2)} "
                                              "a{background:url(//cdn.example/x.png)}")
    html = (site / "index.html").read_text()
    assert "<script>" not in html and "init-service-worker" not in html
    assert html.count('src="/viewer/app-config.js"') == 1 and 'src="/viewer/boot.js"' in html
    assert 'href="/viewer/manifest.json"' in html and 'src="/viewer/app.bundle.1.js"' in html
    assert 'href="//elsewhere.example/"' in html  # another host's link is not made ours
    assert "browserImportFunction" in (site / "boot.js").read_text()
    assert not (site / "ort").exists() and not (site / "sw.js").exists()
    assert not (site / "app.bundle.1.js.gz").exists()  # too small to be worth it
    assert gzip.decompress((site / "2.bundle.js.gz").read_bytes()) == (dist / "2.bundle.js").read_bytes()


def test_a_dist_laid_out_differently_is_refused_and_the_old_site_kept(dist, tmp_path):
    build(dist, tmp_path / "site")
    (dist / "app.bundle.1.js").write_text('__webpack_require__.p = "auto";')
    with pytest.raises(SiteError, match="public path"):
        build(dist, tmp_path / "site")
    assert (tmp_path / "site" / "index.html").is_file()
    with pytest.raises(SiteError, match="no index.html"):
        build(tmp_path / "nothing", tmp_path / "site")


def test_the_installed_site_reaches_nothing_outside_the_portal():
    site = settings.VIEWER_ROOT
    html = (site / "index.html").read_text()
    assert "<script>" not in html and "http" not in html
    assert not (site / "ort").exists() and not (site / "sw.js").exists()
    scripts = [p for p in site.glob("*.js") if '__webpack_require__.p = "/"' in p.read_text(encoding="utf-8")]
    assert scripts == []

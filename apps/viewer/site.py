"""Lay out the OHIF viewer's prebuilt dist/ (the npm package @ohif/app) as the site the portal serves at
/viewer/. The dist is built for the root of a host: its webpack runtime loads chunks, workers and codecs
from "/" and its index.html names "/..." throughout. Both are rewritten to PREFIX; the index loses its
inline scripts (the Content-Security-Policy allows none) and its service worker (which would fetch its
library from a CDN), and app-config.js is the portal's own (apps/viewer/views.py)."""
import gzip
import re
import shutil
from pathlib import Path

PREFIX = "/viewer/"
# Left out: the ONNX runtime of the AI segmentation tools (136 MB) and the slide-microscopy viewer (20 MB),
# which the CT/MR modes never load; the service worker and hosting files of OHIF's own deployments; the
# package's app-config.js and index.html, which are replaced.
LEFT_OUT = {"ort", "dicom-microscopy-viewer", "sw.js", "init-service-worker.js", "google.js", "_headers",
            "_redirects", "serve.json", "silent-refresh.html", "app-config.js", "index.html"}
COMPRESSED = {".js", ".css", ".wasm", ".json", ".svg", ".map"}
PUBLIC_PATH = '__webpack_require__.p = "/";'
BOOT_JS = (f'window.PUBLIC_URL = "{PREFIX}";\n'
           'console.time("scriptToView");  // OHIF ends this timer once the first image shows\n'
           "// OHIF imports its extensions through this global (the dist's index.html defined it inline).\n"
           "function browserImportFunction(moduleId) { return import(moduleId); }\n")


class SiteError(Exception):
    """The package's dist is not laid out as this version of the install expects."""


def index_html(original: str) -> str:
    """The dist's index.html with every root-absolute link under PREFIX, no inline or service-worker
    scripts, and the portal's app-config.js and boot.js first in <head> (after the charset)."""
    html = re.sub(r"<script>.*?</script>", "", original, flags=re.S)
    html = re.sub(r'<script[^>]*src="/(app-config|init-service-worker)\.js"[^>]*></script>', "", html)
    html = re.sub(r'(href|src)="/(?!/)', rf'\1="{PREFIX}', html)
    if "<script" not in html or "<head>" not in html:
        raise SiteError("the dist's index.html has no <head> or no bundle <script>")
    ours = f'<script src="{PREFIX}app-config.js"></script><script src="{PREFIX}boot.js"></script>'
    if '<meta charset="UTF-8">' in html:
        return html.replace('<meta charset="UTF-8">', '<meta charset="UTF-8">' + ours, 1)
    return html.replace("<head>", "<head>" + ours, 1)


def compress(site: Path) -> None:
    """A .gz beside every script, stylesheet and WebAssembly module: a fifth of the bytes to a phone, compressed
    once here rather than on every request (apps/viewer/views.py serves it to browsers that accept gzip)."""
    for path in site.rglob("*"):
        if path.suffix in COMPRESSED and path.is_file() and path.stat().st_size > 1024:
            with open(path, "rb") as plain, gzip.open(path.with_name(path.name + ".gz"), "wb", compresslevel=6) as out:
                shutil.copyfileobj(plain, out)


def build(dist: Path, site: Path) -> dict:
    """Copy dist to site (replacing it), rewritten for PREFIX. Returns {"files", "bytes", "patched"}."""
    dist, site = Path(dist), Path(site)
    if not (dist / "index.html").is_file():
        raise SiteError(f"{dist} holds no index.html: is @ohif/app installed (npm ci in vendor/viewer)?")
    staging = site.with_name(site.name + ".new")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(dist, staging, symlinks=True, ignore=lambda folder, names: [
        n for n in names if Path(folder) == dist and n in LEFT_OUT])
    links = [p for p in staging.rglob("*") if p.is_symlink()]
    if links:  # the site is served as it is: nothing in it may lead elsewhere
        shutil.rmtree(staging)
        raise SiteError(f"the dist holds symbolic links ({links[0].relative_to(staging)}): refused")
    patched = 0
    for script in staging.glob("*.js"):
        text = script.read_text(encoding="utf-8")
        if PUBLIC_PATH in text:
            script.write_text(text.replace(PUBLIC_PATH, f'__webpack_require__.p = "{PREFIX}";'), encoding="utf-8")
            patched += 1
    for sheet in staging.glob("*.css"):  # fonts named url(/…) from the root
        text = sheet.read_text(encoding="utf-8")
        sheet.write_text(re.sub(r"url\((['\"]?)/(?!/)", rf"url(\1{PREFIX}", text), encoding="utf-8")
    if not patched:
        raise SiteError(f"no script in {dist} sets webpack's public path to \"/\": this OHIF build is laid "
                        "out differently; check apps/viewer/site.py against it")
    (staging / "index.html").write_text(index_html((dist / "index.html").read_text(encoding="utf-8")),
                                        encoding="utf-8")
    (staging / "boot.js").write_text(BOOT_JS, encoding="utf-8")
    compress(staging)
    shutil.rmtree(site, ignore_errors=True)
    staging.rename(site)
    files = [p for p in site.rglob("*") if p.is_file()]
    return {"files": len(files), "bytes": sum(p.stat().st_size for p in files), "patched": patched}


def main(argv=None) -> None:
    import argparse
    import time

    parser = argparse.ArgumentParser(description="Lay out the OHIF viewer's dist/ as the portal's /viewer/ site.")
    parser.add_argument("--dist", default="vendor/viewer/node_modules/@ohif/app/dist")
    parser.add_argument("--site", default="vendor/viewer/site", help="the portal's VIEWER_ROOT")
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        done = build(Path(args.dist), Path(args.site))
    except (SiteError, OSError) as exc:
        raise SystemExit(f"viewer not installed: {exc}") from exc
    print(f"viewer installed in {args.site}: {done['files']} files, {done['bytes'] / 1e6:.1f} MB, "
          f"{done['patched']} scripts rewritten for {PREFIX}, in {time.monotonic() - started:.1f} s")


if __name__ == "__main__":
    main()

"""The built book in a real browser (issue #8): `make check-browser` runs this script.

Serves ``_build/html`` over ``http://127.0.0.1:<free port>`` (file:// URLs treat fonts and scripts differently),
opens every page in headless Chromium (Debian ``chromium``, driven by playwright; playwright never downloads a
browser here) and fails when a page

* has an ``<img>`` that did not load (``complete`` and ``naturalWidth > 0``),
* is a chapter (an executed notebook under ``generated/``) without a rendered table (a ``<table>`` with a ``<td>``)
  or without a rendered figure (an output ``<img>`` with ``naturalWidth > 0``), or shows a notebook error output,
* logs a console error or throws a page error (except the notes below),
* has a same-origin request that failed or answered HTTP >= 400.

Notes, reported but not failing: (1) cross-origin requests: the book must be offline-clean, so every one is aborted
(the network is closed anyway) and listed; ``--strict-offline`` makes them failures. (2) ``KNOWN_ISSUES``: console
messages of the pinned Sphinx/theme stack that are understood and harmless, each matched on its exact text and explained;
``--strict-known`` makes them failures. Each page gets a full-page screenshot
``<out>/<page-name>.png``; ``<out>/report.json`` holds the per-page details. Exit status 1 names the failures.

Not collected by pytest (the name has no ``test_`` prefix); the pure helpers (page discovery, request/console
classification, page verdicts) are importable.
"""
from __future__ import annotations

import argparse
import functools
import http.server
import json
import shutil
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

CHROMIUM_NAMES = ("chromium", "chromium-browser")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

# What each kind of page must show. Chapters are the papermill-executed notebooks: every one renders result
# tables (pandas) and matplotlib figures. Prose pages (book/*.md, index.html) need neither.
EXPECTATIONS = {
    "chapter": {"min_tables": 1, "min_figures": 1},
    "prose": {"min_tables": 0, "min_figures": 0},
}

# Console messages from the pinned doc stack that are understood and harmless, matched on their exact text, each
# with a "why". Empty: the two this check found are fixed at their source, sphinx-thebe's inline script written
# twice by Sphinx 7.4.7 ("Identifier 'THEBE_JS_URL' has already been declared", book/_ext/dedupe_inline_js.py) and
# pydata-sphinx-theme's "Got invalid theme mode" on a first visit (html_context.default_mode in _config.yml).
KNOWN_ISSUES: dict[str, dict[str, str]] = {}

# Browser-generated console text for a request that never completed; when the request is cross-origin (blocked
# here on purpose) it is a note, not a page error.
_LOAD_FAILURE_PREFIX = "Failed to load resource"

_PAGE_JS = """() => {
  const imgs = Array.from(document.images);
  const tables = Array.from(document.querySelectorAll('table')).filter(t => t.querySelector('td'));
  const figs = imgs.filter(i => i.closest('.cell_output, .output, figure'));
  return {
    title: (document.querySelector('h1') || {}).textContent || '',
    text_chars: (document.querySelector('article') || document.body).innerText.length,
    n_tables: tables.length,
    n_cells: tables.reduce((n, t) => n + t.querySelectorAll('td').length, 0),
    images: imgs.map(i => ({src: i.currentSrc || i.src, complete: i.complete, naturalWidth: i.naturalWidth,
                            naturalHeight: i.naturalHeight})),
    n_figures: figs.filter(i => i.complete && i.naturalWidth > 0).length,
    n_error_outputs: document.querySelectorAll('.cell_output .output.traceback, .cell_output .output.error').length,
  };
}"""

# Make lazy images load and wait (bounded) until every image has settled, loaded or broken.
_SETTLE_IMAGES_JS = """async (timeoutMs) => {
  const imgs = Array.from(document.images);
  imgs.forEach(i => { if (i.loading === 'lazy') i.loading = 'eager'; });
  const settle = i => i.complete ? Promise.resolve() :
    new Promise(r => { i.addEventListener('load', r, {once: true}); i.addEventListener('error', r, {once: true}); });
  await Promise.race([Promise.all(imgs.map(settle)), new Promise(r => setTimeout(r, timeoutMs))]);
}"""


# --------------------------------------------------------------------------------------------- pure helpers
def page_kind(rel: str) -> str:
    """``chapter`` for an executed notebook (a page under a ``generated/`` folder), else ``prose``."""
    return "chapter" if "generated" in Path(rel).parts[:-1] else "prose"


def discover_pages(html_dir: Path) -> list[str]:
    """Every page of the book, relative to ``html_dir``: ``index.html``, the prose pages under ``book/`` and the
    chapters under ``book/**/generated/``. Sphinx's own pages (search, genindex), ``_static`` and ``_sources`` are
    left out."""
    html_dir = Path(html_dir)
    pages = ["index.html"] if (html_dir / "index.html").exists() else []
    book = html_dir / "book"
    if book.is_dir():
        pages += sorted(p.relative_to(html_dir).as_posix() for p in book.rglob("*.html"))
    return pages


def toc_pages(toc_file: Path) -> list[str]:
    """The pages ``_toc.yml`` promises (``root`` and every ``file``), as ``<file>.html`` paths."""
    import yaml
    toc = yaml.safe_load(Path(toc_file).read_text()) or {}
    files: list[str] = []

    def walk(node):
        if isinstance(node, dict):
            for key in ("root", "file"):
                if isinstance(node.get(key), str):
                    files.append(node[key])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(toc)
    out = []
    for f in files:
        f = f.rsplit(".", 1)[0] if f.endswith((".md", ".ipynb", ".rst")) else f
        if f + ".html" not in out:
            out.append(f + ".html")
    return out


def in_toc_order(pages: list[str], toc: list[str]) -> list[str]:
    """``index.html`` first, then the pages in ``_toc.yml`` order, then any others (sorted)."""
    rank = {p: i for i, p in enumerate(["index.html"] + toc)}
    return sorted(pages, key=lambda p: (rank.get(p, len(rank)), p))


def screenshot_names(pages: list[str]) -> dict[str, str]:
    """``<page-name>.png`` per page (the file stem); the relative path joined with ``__`` where stems collide."""
    stems: dict[str, int] = {}
    for p in pages:
        stems[Path(p).stem] = stems.get(Path(p).stem, 0) + 1
    return {p: (Path(p).stem if stems[Path(p).stem] == 1 else p[:-len(".html")].replace("/", "__")) + ".png"
            for p in pages}


def same_origin(url: str, origin: str) -> bool:
    """True for a URL on the book's own server; ``data:``/``blob:``/``about:`` URLs count as local too."""
    parts = urlsplit(url)
    if parts.scheme in ("data", "blob", "about", "javascript"):
        return True
    return f"{parts.scheme}://{parts.netloc}" == origin.rstrip("/")


def classify_request_failure(url: str, origin: str, error: str) -> str:
    """``failure`` for a same-origin request that did not complete, ``external`` for a cross-origin one."""
    return "failure" if same_origin(url, origin) else "external"


def classify_response(url: str, origin: str, status: int) -> str | None:
    """``failure`` for a same-origin HTTP status >= 400, ``external`` for a cross-origin one, else None."""
    if status < 400:
        return None
    return "failure" if same_origin(url, origin) else "external"


def known_issue(text: str) -> str | None:
    """The ``KNOWN_ISSUES`` id whose text the console message or page error contains, else None."""
    for key, issue in KNOWN_ISSUES.items():
        if issue["text"] in text:
            return key
    return None


def classify_console(text: str, location_url: str, origin: str) -> str:
    """A console error (or page error) is a ``failure``, except Chromium's own "Failed to load resource" message,
    which is ``external`` for a cross-origin URL (requests this checker blocks on purpose) and ``request`` for a
    same-origin one (the failed request itself is reported, once), and a ``KNOWN_ISSUES`` message, which is
    ``known:<id>``."""
    if text.startswith(_LOAD_FAILURE_PREFIX) and location_url:
        return "request" if same_origin(location_url, origin) else "external"
    key = known_issue(text)
    return f"known:{key}" if key else "failure"


@dataclass
class PageResult:
    page: str
    kind: str
    url: str
    final_url: str = ""
    title: str = ""
    text_chars: int = 0
    n_tables: int = 0
    n_table_cells: int = 0
    n_images: int = 0
    n_figures: int = 0
    n_error_outputs: int = 0
    broken_images: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    external_requests: list[str] = field(default_factory=list)
    known_issues: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    screenshot: str = ""
    seconds: float = 0.0
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures


def judge(r: PageResult, strict_offline: bool = False, strict_known: bool = False) -> list[str]:
    """The reasons a page fails (empty when it passes)."""
    exp = EXPECTATIONS[r.kind]
    reasons = []
    if not r.title.strip():
        reasons.append("no <h1> title (blank page?)")
    for src in r.broken_images:
        reasons.append(f"broken image {src}")
    if r.n_tables < exp["min_tables"]:
        reasons.append(f"{r.n_tables} rendered tables (<table> with <td>), a {r.kind} needs >= {exp['min_tables']}")
    if r.n_figures < exp["min_figures"]:
        reasons.append(f"{r.n_figures} rendered figures, a {r.kind} needs >= {exp['min_figures']}")
    if r.n_error_outputs:
        reasons.append(f"{r.n_error_outputs} notebook error outputs")
    reasons += [f"console error: {m}" for m in r.console_errors]
    reasons += [f"page error: {m}" for m in r.page_errors]
    reasons += [f"request failed: {m}" for m in r.failed_requests]
    if strict_offline:
        reasons += [f"external request (--strict-offline): {m}" for m in r.external_requests]
    if strict_known:
        reasons += [f"known issue (--strict-known): {m}" for m in r.known_issues]
    return reasons


def find_chromium(explicit: str | None = None) -> str:
    if explicit:
        if not Path(explicit).exists() and not shutil.which(explicit):
            raise SystemExit(f"--chromium {explicit}: not found")
        return shutil.which(explicit) or explicit
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    raise SystemExit("no chromium found (tried chromium, chromium-browser); `apt-get install -y chromium` "
                     "or pass --chromium PATH")


# ----------------------------------------------------------------------------------------------- the browser
class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - signature fixed by the base class
        pass


def serve(html_dir: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    handler = functools.partial(_QuietHandler, directory=str(html_dir))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}"


def check_page(context, origin: str, rel: str, shot: Path, timeout_ms: int) -> PageResult:
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

    r = PageResult(page=rel, kind=page_kind(rel), url=f"{origin}/{rel}")
    page = context.new_page()

    def on_route(route):
        url = route.request.url
        if same_origin(url, origin):
            route.continue_()
        else:
            r.external_requests.append(f"{route.request.resource_type} {url}")
            route.abort("blockedbyclient")

    def on_console(msg):
        if msg.type != "error":
            return
        loc = (msg.location or {}).get("url", "")
        verdict = classify_console(msg.text, loc, origin)
        if verdict == "failure":
            r.console_errors.append(msg.text + (f" ({loc})" if loc else ""))
        elif verdict.startswith("known:"):
            r.known_issues.append(f"{verdict[6:]}: console error: {msg.text}")

    def on_page_error(exc):
        text = str(exc)
        key = known_issue(text)
        if key:
            r.known_issues.append(f"{key}: page error: {text}")
        else:
            r.page_errors.append(text)

    failed_urls: set[str] = set()  # one entry per URL: a 404 stylesheet is also reported as net::ERR_ABORTED

    def on_request_failed(req):
        err = req.failure or "?"
        if classify_request_failure(req.url, origin, err) == "failure" and req.url not in failed_urls:
            failed_urls.add(req.url)
            r.failed_requests.append(f"{req.url} ({err})")

    def on_response(resp):
        if classify_response(resp.url, origin, resp.status) == "failure" and resp.url not in failed_urls:
            failed_urls.add(resp.url)
            r.failed_requests.append(f"{resp.url} (HTTP {resp.status})")

    page.route("**/*", on_route)
    page.on("console", on_console)
    page.on("pageerror", on_page_error)
    page.on("requestfailed", on_request_failed)
    page.on("response", on_response)
    t0 = time.perf_counter()
    try:
        page.goto(r.url, wait_until="load", timeout=timeout_ms)
        try:  # the checks below still run if the network never goes quiet; the note says so
            page.wait_for_load_state("networkidle", timeout=timeout_ms)
        except PlaywrightTimeoutError:
            r.notes.append(f"network not idle {timeout_ms / 1000:.0f} s after load")
        page.evaluate(_SETTLE_IMAGES_JS, min(timeout_ms, 15000))
        info = page.evaluate(_PAGE_JS)
        r.final_url = page.url
        r.title, r.text_chars = info["title"].strip().rstrip("#").strip(), info["text_chars"]
        r.n_tables, r.n_table_cells = info["n_tables"], info["n_cells"]
        r.n_images, r.n_figures, r.n_error_outputs = len(info["images"]), info["n_figures"], info["n_error_outputs"]
        r.broken_images = [i["src"] for i in info["images"] if not (i["complete"] and i["naturalWidth"] > 0)]
        page.screenshot(path=str(shot), full_page=True, timeout=timeout_ms)
        r.screenshot = str(shot)
    except Exception as exc:  # a page that does not load is a failure of that page, not of the run
        r.page_errors.append(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
    finally:
        r.seconds = round(time.perf_counter() - t0, 2)
        page.close()
    return r


def run(html_dir: Path, out_dir: Path, pages: list[str], chromium: str, timeout_ms: int = 60000,
        strict_offline: bool = False, strict_known: bool = False, width: int = 1280) -> list[PageResult]:
    from playwright.sync_api import sync_playwright

    out_dir.mkdir(parents=True, exist_ok=True)
    names = screenshot_names(pages)
    httpd, origin = serve(html_dir)
    results = []
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
            context = browser.new_context(viewport={"width": width, "height": 900}, service_workers="block")
            for rel in pages:
                r = check_page(context, origin, rel, out_dir / names[rel], timeout_ms)
                r.failures = judge(r, strict_offline, strict_known)
                results.append(r)
            context.close()
            browser.close()
    finally:
        httpd.shutdown()
        httpd.server_close()
    return results


def summary(results: list[PageResult]) -> str:
    w = max([len(r.page) for r in results] + [4])
    lines = [f"{'page':<{w}}  {'kind':<7}  tables  figs  imgs  broken  errors  req-fail  extern  known  secs  result",
             "-" * (w + 84)]
    for r in results:
        console = len(r.console_errors) + len(r.page_errors)
        lines.append(f"{r.page:<{w}}  {r.kind:<7}  {r.n_tables:>6}  {r.n_figures:>4}  {r.n_images:>4}  "
                     f"{len(r.broken_images):>6}  {console:>6}  {len(r.failed_requests):>8}  "
                     f"{len(r.external_requests):>6}  {len(r.known_issues):>5}  {r.seconds:>4.1f}  {'PASS' if r.passed else 'FAIL'}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--html", default="_build/html", type=Path, help="the built book (default _build/html)")
    ap.add_argument("--out", default="_build/screenshots", type=Path, help="screenshots and report.json")
    ap.add_argument("--chromium", default=None, help="browser binary (default: chromium or chromium-browser on PATH)")
    ap.add_argument("--pages", nargs="*", default=None,
                    help="pages relative to --html (default: index.html, book/*.html and the chapters)")
    ap.add_argument("--toc", default="_toc.yml", type=Path,
                    help="every page this _toc.yml lists must have been built (skipped if the file is absent)")
    ap.add_argument("--timeout", default=60.0, type=float, help="seconds per page step (default 60)")
    ap.add_argument("--strict-offline", action="store_true", help="cross-origin requests fail the page")
    ap.add_argument("--strict-known", action="store_true", help="KNOWN_ISSUES messages fail the page")
    args = ap.parse_args(argv)

    html = args.html.resolve()
    if not (html / "index.html").exists():
        print(f"{html}/index.html missing: build the book first (make html)", file=sys.stderr)
        return 1
    pages = args.pages or discover_pages(html)
    missing = [p for p in pages if not (html / p).is_file()]
    if args.pages is None and args.toc.is_file():
        toc = toc_pages(args.toc)
        missing += [p for p in toc if not (html / p).is_file()]
        pages = in_toc_order(pages, toc)
    if missing:
        print(f"pages missing from {html}: {missing}", file=sys.stderr)
        return 1
    chromium = find_chromium(args.chromium)
    print(f"[browser-check] {len(pages)} pages from {html} in {chromium}", flush=True)
    t0 = time.perf_counter()
    results = run(html, args.out, pages, chromium, timeout_ms=int(args.timeout * 1000),
                  strict_offline=args.strict_offline, strict_known=args.strict_known)
    elapsed = time.perf_counter() - t0

    report = {"html": str(html), "chromium": chromium, "seconds": round(elapsed, 1),
              "expectations": EXPECTATIONS, "known_issues": KNOWN_ISSUES,
              "strict_offline": args.strict_offline, "strict_known": args.strict_known,
              "passed": all(r.passed for r in results),
              "pages": [{**asdict(r), "passed": r.passed} for r in results]}
    (args.out / "report.json").write_text(json.dumps(report, indent=1))
    print(summary(results))
    external = sorted({u for r in results for u in r.external_requests})
    if external:
        print(f"note: {len(external)} cross-origin requests were blocked (the book should be offline-clean):")
        for u in external:
            print(f"  {u}")
    for key in KNOWN_ISSUES:
        n = sum(any(m.startswith(key + ":") for m in r.known_issues) for r in results)
        if n:
            print(f"note: known issue {key} on {n} pages ({'failing' if args.strict_known else 'not failing'}): "
                  f"{KNOWN_ISSUES[key]['text']!r}\n      {KNOWN_ISSUES[key]['why']}")
    for r in results:
        for n in r.notes:
            print(f"note: {r.page}: {n}")
    print(f"[browser-check] screenshots and report.json in {args.out} ({elapsed:.1f} s)")
    failed = [r for r in results if not r.passed]
    if failed:
        print(f"\nFAILED: {len(failed)} of {len(results)} pages", file=sys.stderr)
        for r in failed:
            for reason in r.failures:
                print(f"  {r.page}: {reason}", file=sys.stderr)
        return 1
    print(f"[browser-check] all {len(results)} pages pass")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Sphinx extension: write each inline <script> into a page once.

Why: Sphinx 7.4.7 compares inline scripts by (filename, body) and stores some with filename None
and others with '' for the same body, so an inline script an extension adds after the builder
starts (sphinx-thebe's ``const THEBE_JS_URL = ...``) is emitted twice. The second copy throws
"Identifier 'THEBE_JS_URL' has already been declared" in every browser console
(`make check-browser` found it). This handler drops the repeats before the page is rendered.
"""
from __future__ import annotations

from typing import Any


def _dedupe(app: Any, pagename: str, templatename: str, context: dict, doctree: Any) -> None:
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, kept = set(), []
    for js in scripts:
        key = (getattr(js, "filename", js) or "", tuple(sorted(getattr(js, "attributes", {}).items())))
        if key in seen:
            continue
        seen.add(key)
        kept.append(js)
    context["script_files"] = kept


def setup(app: Any) -> dict[str, Any]:
    app.connect("html-page-context", _dedupe)
    return {"parallel_read_safe": True, "parallel_write_safe": True}

"""Small fixes to the HTML that Jupyter Book 1.x produces (loaded from ``_config.yml``).

* **Each inline script once.** Sphinx 7.4 registers an inline script added by an
  extension after ``builder-inited`` twice: once as ``_JavaScript(None, body=...)`` and
  again, when writing starts, as ``_JavaScript('', body=...)``; the two compare unequal, so
  both are emitted. sphinx-thebe adds ``const THEBE_JS_URL = ...`` that way, and the
  second ``const`` throws "Identifier 'THEBE_JS_URL' has already been declared" on every
  page (sphinx-togglebutton's selector is doubled the same way, harmlessly). At
  ``write-started`` the builder's scripts are normalised (``None`` -> ``''``) and
  de-duplicated, so the registry's copies are recognised as already present.
* **No Thebe when Thebe is off.** Jupyter Book always loads sphinx-thebe; with
  ``launch_buttons.thebe: false`` its scripts (which would fetch thebe from unpkg.com on
  demand) are dropped, so an offline page loads nothing it cannot use.
"""

from __future__ import annotations

from sphinx.application import Sphinx


def _thebe_enabled(app: Sphinx) -> bool:
    options = app.config.html_theme_options or {}
    return bool((options.get("launch_buttons") or {}).get("thebe"))


def _is_thebe(js) -> bool:
    return "thebe" in (js.filename or "") or "THEBE_JS_URL" in str(js.attributes.get("body", ""))


def _dedupe_scripts(app: Sphinx, builder) -> None:
    if not hasattr(builder, "_js_files"):
        return
    from sphinx.builders.html._assets import _JavaScript

    drop_thebe = not _thebe_enabled(app)
    seen, kept = set(), []
    for js in builder._js_files:
        if js.filename is None:
            js = _JavaScript("", priority=js.priority, **js.attributes)
        if drop_thebe and _is_thebe(js):
            continue
        if js not in seen:
            seen.add(js)
            kept.append(js)
    builder._js_files[:] = kept
    if drop_thebe:  # prepare_writing re-adds the registry's scripts after this event
        app.registry.js_files[:] = [
            (name, attrs)
            for name, attrs in app.registry.js_files
            if not _is_thebe(_JavaScript(name or "", **attrs))
        ]


def _dedupe_single_page(app: Sphinx, pagename, templatename, context, doctree) -> None:
    # the singlehtml builder (tools/build_pdf.py) writes without emitting write-started;
    # its page context's script_files is the builder's own list, de-duplicated in place
    if app.builder.name == "singlehtml":
        _dedupe_scripts(app, app.builder)


def setup(app: Sphinx):
    app.connect("write-started", _dedupe_scripts)
    app.connect("html-page-context", _dedupe_single_page)
    return {"parallel_read_safe": True, "parallel_write_safe": True}

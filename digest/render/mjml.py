"""MJML to HTML with mrml, plus the checks mrml does not make (unknown or misplaced elements).

mrml refuses malformed XML but renders an unknown element, a misplaced one or a misspelt
attribute silently (the content just goes missing), so templates are linted before compiling.
"""

from __future__ import annotations

import hashlib
import re

from mjml import mjml2html

_TAG = re.compile(r"<(/?)(mjml|mj-[a-z-]+)\b((?:[^>\"']|\"[^\"]*\"|'[^']*')*?)(/?)>")
_ATTR = re.compile(r"([a-zA-Z_:][-a-zA-Z0-9_:.]*)\s*(?:=\s*(\"[^\"]*\"|'[^']*'|[^\s\"'>/=`]+))?")
_RAW_CONTENT = {
    "mj-text",
    "mj-button",
    "mj-raw",
    "mj-style",
    "mj-title",
    "mj-preview",
    "mj-table",
    "mj-navbar-link",
    "mj-social-element",
    "mj-accordion-title",
    "mj-accordion-text",
}
_CONTENT = {
    "mj-accordion",
    "mj-button",
    "mj-carousel",
    "mj-divider",
    "mj-image",
    "mj-raw",
    "mj-social",
    "mj-spacer",
    "mj-table",
    "mj-text",
    "mj-navbar",
}
_CHILDREN: dict[str, set[str]] = {
    "mjml": {"mj-head", "mj-body"},
    "mj-head": {
        "mj-attributes",
        "mj-breakpoint",
        "mj-font",
        "mj-html-attributes",
        "mj-preview",
        "mj-style",
        "mj-title",
        "mj-raw",
    },
    "mj-body": {"mj-raw", "mj-section", "mj-wrapper", "mj-hero"},
    "mj-wrapper": {"mj-hero", "mj-raw", "mj-section"},
    "mj-section": {"mj-column", "mj-group", "mj-raw"},
    "mj-group": {"mj-column", "mj-raw"},
    "mj-column": _CONTENT,
    "mj-hero": _CONTENT,
    "mj-social": {"mj-social-element", "mj-raw"},
    "mj-navbar": {"mj-navbar-link", "mj-raw"},
    "mj-accordion": {"mj-accordion-element", "mj-raw"},
    "mj-accordion-element": {"mj-accordion-title", "mj-accordion-text", "mj-raw"},
    "mj-carousel": {"mj-carousel-image"},
    "mj-html-attributes": {"mj-selector"},
    "mj-selector": {"mj-html-attribute"},
}
_PAD = {"padding", "padding-top", "padding-bottom", "padding-left", "padding-right"}
_BORDER = {"border", "border-top", "border-bottom", "border-left", "border-right", "border-radius"}
_COMMON = {"css-class", "mj-class"}
_FONT = {
    "color",
    "font-family",
    "font-size",
    "font-style",
    "font-weight",
    "line-height",
    "letter-spacing",
    "text-decoration",
    "text-transform",
    "align",
    "container-background-color",
}
_ATTRIBUTES: dict[str, set[str]] = {
    "mjml": {"lang", "dir", "owa"},
    "mj-head": set(),
    "mj-body": {"width", "background-color"} | _COMMON,
    "mj-section": {
        "background-color",
        "background-url",
        "background-repeat",
        "background-size",
        "background-position",
        "background-position-x",
        "background-position-y",
        "direction",
        "full-width",
        "text-align",
        "text-padding",
    }
    | _PAD
    | _BORDER
    | _COMMON,
    "mj-column": {
        "background-color",
        "inner-background-color",
        "inner-border",
        "inner-border-radius",
        "vertical-align",
        "width",
        "direction",
    }
    | _PAD
    | _BORDER
    | _COMMON,
    "mj-text": _FONT | {"height"} | _PAD | _COMMON,
    "mj-button": _FONT
    | {
        "background-color",
        "height",
        "href",
        "inner-padding",
        "rel",
        "target",
        "text-align",
        "title",
        "vertical-align",
        "width",
        "name",
    }
    | _PAD
    | _BORDER
    | _COMMON,
    "mj-image": {
        "align",
        "alt",
        "container-background-color",
        "fluid-on-mobile",
        "height",
        "href",
        "name",
        "rel",
        "sizes",
        "src",
        "srcset",
        "target",
        "title",
        "usemap",
        "width",
    }
    | _PAD
    | _BORDER
    | _COMMON,
    "mj-divider": {"border-color", "border-style", "border-width", "container-background-color"}
    | {"width", "align"}
    | _PAD
    | _COMMON,
    "mj-spacer": {"container-background-color", "height"} | _PAD | _COMMON,
    "mj-raw": {"position"},
    "mj-include": {"path", "type", "css-inline"},
    "mj-style": {"inline"},
    "mj-breakpoint": {"width"},
    "mj-font": {"name", "href"},
    "mj-title": set(),
    "mj-preview": set(),
    "mj-attributes": set(),
}
_KNOWN_TAGS = (
    set(_ATTRIBUTES)
    | set(_CHILDREN)
    | {
        "mj-all",
        "mj-class",
        "mj-social-element",
        "mj-navbar-link",
        "mj-carousel-image",
        "mj-accordion-title",
        "mj-accordion-text",
        "mj-html-attribute",
        "mj-table",
    }
)
_LINE_BREAK = re.compile(
    r">(?=<(?:/?(?:table|tbody|tr|td|div|p|h[1-6]|meta|style|title|head|body)\b|!--))"
)
_STYLE_BLOCK = re.compile(r"<style[^>]*>(.*?)</style>", re.S)
_IMG = re.compile(r"<img\b[^>]*>", re.I)
_COLOR_SCHEME = (
    '<meta name="color-scheme" content="light dark">\n'
    '<meta name="supported-color-schemes" content="light dark">\n'
)

_PREVIEW_STYLE = (
    '<div style="display:none;font-size:1px;color:#ffffff;line-height:1px;max-height:0px;'
    'max-width:0px;opacity:0;overflow:hidden;">'
)

_PREVIEW_HIDDEN = (
    '<div style="display:none;max-height:0px;max-width:0px;opacity:0;overflow:hidden;'
    'mso-hide:all;">'
)

_COMPILED: dict[str, str] = {}


def lint_mjml(source: str) -> list[str]:
    """What mjml's validator would warn about: unknown tags or attributes, misplaced elements, bare images."""
    problems: list[str] = []
    stack: list[str] = []
    raw_until: str | None = None
    for found in _TAG.finditer(source):
        closing, name, attrs, selfclose = found.groups()
        line = source.count("\n", 0, found.start()) + 1
        if raw_until is not None:
            if closing and name == raw_until:
                raw_until = None
                stack.pop()
            continue
        if closing:
            if not stack or stack[-1] != name:
                problems.append(f"line {line}: </{name}> closes nothing open")
            else:
                stack.pop()
            continue
        if name not in _KNOWN_TAGS:
            problems.append(f"line {line}: unknown element <{name}>")
        parent = stack[-1] if stack else None
        in_attributes = parent in ("mj-attributes", "mj-class", "mj-all")
        if parent is None and name != "mjml":
            problems.append(f"line {line}: <{name}> outside <mjml>")
        elif parent is not None and not in_attributes:
            allowed = _CHILDREN.get(parent)
            if allowed is not None and name not in allowed:
                problems.append(f"line {line}: <{name}> cannot be used inside <{parent}>")
        seen = {m.group(1): (m.group(2) or "").strip("\"'") for m in _ATTR.finditer(attrs)}
        known = _ATTRIBUTES.get(name)
        if known is not None and name not in ("mj-all", "mj-class"):
            for attr in seen:
                if attr not in known:
                    problems.append(f"line {line}: <{name}> has unknown attribute {attr!r}")
        if name == "mj-image" and not in_attributes:
            for required in ("alt", "width", "height"):
                if required not in seen:
                    problems.append(f"line {line}: <mj-image> needs {required}")
        if not selfclose:
            stack.append(name)
            if name in _RAW_CONTENT:
                raw_until = name
    if stack:
        problems.append(f"<{stack[-1]}> is never closed")
    return problems


def compile_mjml(source: str) -> str:
    """MJML to HTML, cached by content hash; also adds dark-mode meta tags and safe line breaks."""
    digest = hashlib.sha256(source.encode("utf-8")).hexdigest()
    cached = _COMPILED.get(digest)
    if cached is not None:
        return cached
    html = mjml2html(source, disable_comments=True, fonts={})
    html = html.replace("<head>", "<head>\n" + _COLOR_SCHEME, 1)
    # MJML hides the preview text with a 1px white font; spam filters score that as invisible
    # text. display:none with zero height hides it just as well.
    html = html.replace(_PREVIEW_STYLE, _PREVIEW_HIDDEN, 1)
    # Whitespace between block and table tags renders as nothing; it keeps lines short for SMTP.
    html = _LINE_BREAK.sub(">\n", html)
    _COMPILED[digest] = html
    return html


def check_html(html: str) -> list[str]:
    """Problems in compiled HTML: images without alt or size, non-ASCII inside <style>."""
    problems = []
    for img in _IMG.findall(html):
        for attr in ("alt=", "width=", "height="):
            if attr not in img:
                problems.append(f"{img[:60]}… has no {attr[:-1]}")
    for style in _STYLE_BLOCK.findall(html):
        if not style.isascii():
            problems.append("a <style> block holds non-ASCII characters")
    return problems

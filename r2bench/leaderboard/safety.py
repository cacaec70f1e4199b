"""Keeping submitted strings in their place: slugs, names, URLs, Markdown and HTML.

Two layers, on purpose:

1. **Validation refuses** what has no business in an entry: a method name outside a
   plain character set (no ``/``, ``<``, ``|``, ``[``...), a slug that is not
   ``[a-z0-9-]``, a URL that is not ``http(s)://host...``, control characters
   (newlines included) in any one-line field, over-long fields.
2. **Rendering escapes everything anyway** (free-text fields such as the description
   may legitimately contain ``<`` or ``|``): Markdown cells get every CommonMark
   punctuation character backslash-escaped and ``<``/``>``/``&`` turned into
   entities, newlines flattened; HTML gets ``html.escape``; links are only ever built
   from a URL that passed ``check_url`` and are percent-encoded. The HTML page also
   carries a Content-Security-Policy that forbids every script.
"""

from __future__ import annotations

import html
import re
import unicodedata
from urllib.parse import quote, urlsplit

SLUG_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")
#: Method names: letters (any script), digits, spaces and a few harmless punctuation marks.
NAME_RE = re.compile(r"^[^\W_](?:[\w .+\-(),:@&']{0,79})$", re.UNICODE)
MAX_TEXT = 500
MAX_SHORT = 120


def slugify(name: str) -> str:
    """``"SASRec (RecBole, 2 layers)"`` -> ``"sasrec-recbole-2-layers"``.

    ASCII-folds, lower-cases, keeps ``[a-z0-9]`` and turns every other run into one
    dash; the result can never contain ``/``, ``.`` or ``..`` so it is safe as a
    file name. Raises ValueError when nothing is left.
    """
    folded = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^a-z0-9]+", "-", folded.lower()).strip("-")
    slug = slug[:64].rstrip("-")
    if not slug:
        raise ValueError(f"name {name!r} has no letters or digits to build a slug from")
    return slug


def has_control_chars(text: str) -> bool:
    """True for newlines, tabs, NUL, bidi overrides and other non-printing characters."""
    return any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in text)


def check_name(name: object) -> str | None:
    """None when ``name`` is an acceptable method name, else why not."""
    if not isinstance(name, str) or not name.strip():
        return "must be a non-empty string"
    if has_control_chars(name):
        return "contains control characters or line breaks"
    if len(name) > 80:
        return f"is {len(name)} characters long (at most 80)"
    if not NAME_RE.match(name):
        return (
            f"{name!r} must start with a letter or digit and use only letters, digits, spaces "
            "and . + - ( ) , : @ & ' (no / \\ < > | [ ] or backticks)"
        )
    return None


def check_slug(slug: object) -> str | None:
    if not isinstance(slug, str) or not SLUG_RE.match(slug):
        return f"{slug!r} is not a safe slug ([a-z0-9-], at most 64 characters, no leading/trailing dash)"
    return None


def check_url(url: object) -> str | None:
    """None for an absolute http(s) URL with a host and no whitespace, quotes or angle brackets."""
    if not isinstance(url, str):
        return "must be a string"
    if has_control_chars(url) or any(ch.isspace() or ch in "<>\"'`\\" for ch in url):
        return f"{url!r} contains whitespace, quotes, backslashes or angle brackets"
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        return f"{url!r} is not a URL ({exc})"
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return f"{url!r} is not an absolute http(s) URL"
    if len(url) > 300:
        return "is longer than 300 characters"
    return None


def check_text(text: object, max_len: int = MAX_SHORT, multiline: bool = False) -> str | None:
    """Free text: any printable characters (escaped at render time), bounded length."""
    if not isinstance(text, str):
        return "must be a string"
    body = text.replace("\n", "") if multiline else text
    if has_control_chars(body):
        return "contains control characters" + ("" if multiline else " or line breaks")
    if len(text) > max_len:
        return f"is {len(text)} characters long (at most {max_len})"
    return None


# ----------------------------------------------------------------------------- Markdown

_MD_SPECIAL = set("\\`*_{}[]()#+-.!|~:")
_MD_ENTITIES = {"<": "&lt;", ">": "&gt;", "&": "&amp;", '"': "&quot;"}


def md_escape(text: object) -> str:
    """Make ``text`` inert inside a Markdown table cell.

    Every CommonMark punctuation character that could start markup (links, emphasis,
    code, tables, headings) is backslash-escaped, ``< > & "`` become entities (so no
    raw HTML), line breaks become spaces, and ``@``/``www.``/``://`` cannot turn into
    GitHub autolinks because ``.`` and ``:`` are escaped.
    """
    s = "" if text is None else str(text)
    s = re.sub(r"\s+", " ", "".join(" " if has_control_chars(ch) else ch for ch in s)).strip()
    out = []
    for ch in s:
        if ch in _MD_ENTITIES:
            out.append(_MD_ENTITIES[ch])
        elif ch in _MD_SPECIAL:
            out.append("\\" + ch)
        else:
            out.append(ch)
    return "".join(out)


def md_code(text: object) -> str:
    """``text`` as an inline code span (outside tables): nothing inside a code span is
    parsed as Markdown or HTML, so only the fence itself must not close early. The
    fence is one backtick longer than the longest backtick run in ``text``; line
    breaks and control characters become spaces."""
    s = "" if text is None else str(text)
    s = "".join(" " if has_control_chars(ch) else ch for ch in s).strip()
    longest = max((len(m) for m in re.findall(r"`+", s)), default=0)
    fence = "`" * (longest + 1)
    return f"{fence} {s} {fence}" if s else ""


def safe_href(url: object) -> str | None:
    """A percent-encoded URL safe to put in a Markdown link or an HTML href, or None."""
    if url is None or check_url(url) is not None:
        return None
    # Keep the URL's own structure; encode anything that could close a link or attribute.
    return quote(str(url), safe=":/?#@!$&+,;=%-._~*")


def md_link(text: str, url: object) -> str:
    href = safe_href(url)
    label = md_escape(text)
    return f"[{label}](<{href}>)" if href else label


# ----------------------------------------------------------------------------- HTML


def h(text: object) -> str:
    """HTML-escape any value (quotes too, so it is safe inside attributes)."""
    return html.escape("" if text is None else str(text), quote=True)


def html_link(text: str, url: object) -> str:
    href = safe_href(url)
    if not href:
        return h(text)
    return f'<a href="{h(href)}" rel="nofollow noopener noreferrer">{h(text)}</a>'

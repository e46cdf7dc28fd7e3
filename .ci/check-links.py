#!/usr/bin/env python3
"""Checks the internal links of the built book, the README and the citation table.

    python3 .ci/check-links.py          # after `mdbook build docs`

Fails (exit 1), listing every broken link with the file and line it is on, when:

* a page of the built book (docs/book/**/*.html) links to, or loads, a file that does not exist,
  or links to an `#anchor` that the target page does not define;
* a link leaves the repository (a relative path climbing above its root, or an absolute
  `file:` path);
* README.md links to a repository file that does not exist, or to a book page (docs/src/*.md)
  that was not built or lacks the `#anchor`;
* a row of docs/paper-citations.tsv names a book page or anchor that does not exist.

Links with a scheme (https:, mailto:, …) are not followed: nothing is fetched. Plain Python 3,
standard library only.
"""
import html.parser
import os
import re
import sys
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BOOK = ROOT / "docs" / "book"
SRC = ROOT / "docs" / "src"
README = ROOT / "README.md"
CITATIONS = ROOT / "docs" / "paper-citations.tsv"

SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


class Page(html.parser.HTMLParser):
    """The ids a page defines and the links it makes (with line numbers)."""

    LINK_ATTRS = {"a": "href", "link": "href", "script": "src", "img": "src", "iframe": "src", "source": "src"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.ids = set()
        self.links = []  # (line, url)
        self.base = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for key in ("id", "name" if tag == "a" else None):
            if key and a.get(key):
                self.ids.add(a[key])
        if tag == "base" and a.get("href"):
            self.base = a["href"]
        want = self.LINK_ATTRS.get(tag)
        if want and a.get(want) is not None:
            self.links.append((self.getpos()[0], a[want]))


_pages = {}


def parse(path):
    """Parsed page, cached."""
    if path not in _pages:
        p = Page()
        p.feed(path.read_text(encoding="utf-8", errors="replace"))
        _pages[path] = p
    return _pages[path]


def rel(path):
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def inside(path, root):
    try:
        path.relative_to(root)
        return True
    except ValueError:
        return False


def check_target(target, fragment, where, problems, html_for_md=False):
    """Checks that `target` (an absolute, normalised path) exists inside the repository and, for a
    book page, that it defines `fragment`."""
    if not inside(target, ROOT):
        problems.append(f"{where}: link leaves the repository: {target}")
        return
    if html_for_md and target.suffix == ".md" and inside(target, SRC):
        # A book source page: check its built counterpart.
        built = BOOK / target.relative_to(SRC).with_suffix(".html")
        if target.name in ("README.md", "index.md") and not built.exists():
            built = built.with_name("index.html")
        if not target.exists():
            problems.append(f"{where}: no such book page: {rel(target)}")
            return
        if not built.exists():
            problems.append(f"{where}: book page {rel(target)} was not built (not in SUMMARY.md?)")
            return
        target = built
    if target.is_dir():
        index = target / "index.html"
        if inside(target, BOOK) and index.exists():
            target = index
        elif fragment:
            problems.append(f"{where}: #{fragment} on a directory: {rel(target)}")
            return
        else:
            return
    if not target.exists():
        problems.append(f"{where}: no such file: {rel(target)}")
        return
    if fragment and target.suffix == ".html":
        if urllib.parse.unquote(fragment) not in parse(target).ids:
            problems.append(f"{where}: no anchor #{fragment} in {rel(target)}")


def split(url):
    url, _, fragment = url.partition("#")
    return urllib.parse.unquote(url.split("?")[0]), fragment


def check_book(problems):
    pages = sorted(BOOK.rglob("*.html"))
    if not pages:
        problems.append(f"no HTML pages under {rel(BOOK)}: run `mdbook build docs` first")
        return 0, 0
    n_links = 0
    for page in pages:
        p = parse(page)
        base_dir = page.parent
        if p.base is not None:
            # mdBook's 404 page resolves its links against the site root.
            b = p.base
            base_dir = BOOK if b.startswith("/") else (page.parent / b).resolve()
        for line, url in p.links:
            if not url or url.startswith(("//",)) or SCHEME.match(url) and not url.startswith("file:"):
                continue
            where = f"{rel(page)}:{line}: {url}"
            if url.startswith("file:"):
                problems.append(f"{where}: absolute file link")
                continue
            n_links += 1
            path, fragment = split(url)
            if not path:
                target = page
            elif path.startswith("/"):
                target = (BOOK / path.lstrip("/")).resolve()
            else:
                target = Path(os.path.normpath(base_dir / path))
            check_target(target, fragment, where, problems)
    return len(pages), n_links


def strip_code(text):
    """Markdown without fenced code blocks and inline code (links there are not links), keeping
    line numbers."""
    out, fence = [], None
    for line in text.split("\n"):
        m = re.match(r"^\s*(```+|~~~+)", line)
        if m:
            marker = m.group(1)[0] * 3
            if fence is None:
                fence = marker
            elif marker == fence:
                fence = None
            out.append("")
            continue
        out.append("" if fence else re.sub(r"`[^`]*`", "", line))
    return out


MD_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
MD_REF = re.compile(r"^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$")
HTML_LINK = re.compile(r"<(?:a|img)\s[^>]*?(?:href|src)=\"([^\"]+)\"", re.I)


def md_anchors(path):
    """The anchors of a Markdown file's headings, as GitHub makes them."""
    anchors, seen = set(), {}
    for line in strip_code(path.read_text(encoding="utf-8")):
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        slug = re.sub(r"[^\w\- ]", "", m.group(1).lower()).replace(" ", "-")
        k = seen.get(slug, 0)
        seen[slug] = k + 1
        anchors.add(slug if k == 0 else f"{slug}-{k}")
    return anchors


def check_markdown(path, problems):
    n = 0
    for i, line in enumerate(strip_code(path.read_text(encoding="utf-8")), 1):
        urls = MD_LINK.findall(line) + HTML_LINK.findall(line)
        m = MD_REF.match(line)
        if m:
            urls.append(m.group(1))
        for url in urls:
            if SCHEME.match(url) and not url.startswith("file:"):
                continue
            where = f"{rel(path)}:{i}: {url}"
            if url.startswith("file:") or url.startswith("/"):
                problems.append(f"{where}: absolute path (links must be relative to the repository)")
                continue
            n += 1
            target, fragment = split(url)
            resolved = Path(os.path.normpath(path.parent / target)) if target else path
            if resolved == path:
                if fragment not in md_anchors(path):
                    problems.append(f"{where}: no heading #{fragment} in {rel(path)}")
                continue
            check_target(resolved, fragment, where, problems, html_for_md=True)
    return n


def check_citations(problems):
    if not CITATIONS.exists():
        problems.append(f"missing {rel(CITATIONS)}")
        return 0
    n = 0
    for i, line in enumerate(CITATIONS.read_text(encoding="utf-8").split("\n"), 1):
        if not line.strip() or line.startswith("#"):
            continue
        cols = line.split("\t")
        if len(cols) < 2:
            problems.append(f"{rel(CITATIONS)}:{i}: expected two tab-separated columns: {line!r}")
            continue
        if i == 1 and cols[0].strip().lower() in ("citation", "cited"):
            continue  # header
        n += 1
        target, fragment = split(cols[1].strip())
        check_target(Path(os.path.normpath(SRC / target)), fragment, f"{rel(CITATIONS)}:{i}: {cols[1].strip()}",
                     problems, html_for_md=True)
    return n


def main():
    problems = []
    n_pages, n_book = check_book(problems)
    n_readme = check_markdown(README, problems) if README.exists() else 0
    n_cite = check_citations(problems)
    if problems:
        print(f"check-links: FAILED, {len(problems)} broken link(s):", file=sys.stderr)
        for p in problems:
            print(f"  - {p}", file=sys.stderr)
        return 1
    print(f"check-links: OK ({n_pages} book pages with {n_book} internal links, {n_readme} README links, "
          f"{n_cite} citation rows)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

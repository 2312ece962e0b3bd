"""MkDocs hooks for the documentation site (mkdocs.yml: `hooks`).

docs/benchmark/ and docs/inn_experiments/ are data folders beside their result pages, with no
page of their own. A link to such a folder (e.g. `[docs/benchmark/](benchmark/)` in
docs/benchmark.md) has no page to point to, and `mkdocs build --strict` refuses it as an
unrecognised link. This hook shows such a link as its text in code style, as the site shows
every other path that is not a page.
"""

from __future__ import annotations

import re

DATA_FOLDERS = ("benchmark", "inn_experiments")
_FOLDER_LINK = re.compile(r"\[([^\]]+)\]\((?:\./)?(?:%s)/\)" % "|".join(map(re.escape, DATA_FOLDERS)))


def _as_code(match: re.Match) -> str:
    text = match.group(1)
    return text if text.startswith("`") else f"`{text}`"


def on_page_markdown(markdown: str, page, config, files) -> str:
    if page.file.src_uri.count("/"):  # only top-level pages sit beside the data folders
        return markdown
    return _FOLDER_LINK.sub(_as_code, markdown)

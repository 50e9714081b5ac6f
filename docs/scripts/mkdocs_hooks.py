"""MkDocs hooks: README.md (the repository's front page) is also the site's home page.

Links keep working in both places: README links pages as ``docs/PAGE.md`` and pages link README as
``../README.md``; on the site these become ``PAGE.md`` and ``index.md``.
"""

from __future__ import annotations

import re
from pathlib import Path

from mkdocs.structure.files import File


def on_files(files, config):
    readme = Path(config["config_file_path"]).parent / "README.md"
    text = re.sub(r"\]\(docs/", "](", readme.read_text(encoding="utf-8"))
    files.append(File.generated(config, "index.md", content=text))
    return files


def on_page_markdown(markdown, page, config, files):
    return re.sub(r"\]\(\.\./README\.md", "](index.md", markdown)

"""Screenshots of a running dashboard with the end-to-end harness's browser,
e.g. for the README after ``pgdurable quickstart``::

    .venv/bin/python tests/ui/screenshot.py http://127.0.0.1:8765 docs/ /instances/ID

saves one PNG per page path given (``/`` when none) into the folder.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from conftest import Browser  # noqa: E402  (the harness beside this file)


def main(base_url: str, folder: str, *paths: str) -> None:
    browser = Browser(base_url)
    try:
        for path in paths or ("/",):
            browser.open(path)
        browser.save(Path(folder))
    finally:
        browser.quit()


if __name__ == "__main__":
    main(*sys.argv[1:])

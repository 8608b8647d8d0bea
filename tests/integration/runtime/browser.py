"""Debian's Chromium, driven by the playwright Python client, on the servers of runtime/podrun.py.

Never `playwright install`: the browser is /usr/bin/chromium (scripts/dev-env
installs it), started headless with a fresh profile per user.

Logging in: JupyterHub 5's single-user server takes no token in the URL (that
is off by default) and its OAuth login needs the hub's proxy in front of both
hub and server, which the runtime harness has no spawner for.  So the browser
sends the user's real API token (made by the hub for that user) in the
Authorization header of every request, which the server checks with the hub
exactly as it checks the OAuth cookie's token: the hub's roles decide.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]
# A cold JupyterLab (a few MB of JavaScript, a loaded 2-core machine): generous.
PAGE_TIMEOUT_MS = 180_000
REPO = Path(__file__).resolve().parents[3]


def artifacts_dir() -> Path:
    """Where screenshots are copied for people to look at (git-ignored by default)."""
    return Path(os.environ.get("CLASSTOOLS_ARTIFACTS") or REPO / ".artifacts")


@contextlib.contextmanager
def playwright():
    if not os.access(CHROMIUM, os.X_OK):
        raise AssertionError(f"{CHROMIUM} is missing: scripts/dev-env installs Debian's chromium")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as driver:
        yield driver


@contextlib.contextmanager
def browser_as(driver, token: str):
    """A fresh Chromium profile whose every request carries `token`."""
    profile = tempfile.mkdtemp(prefix="classtools-chromium-")
    context = driver.chromium.launch_persistent_context(
        profile, executable_path=CHROMIUM, args=FLAGS, headless=True,
        viewport={"width": 1400, "height": 900},
        extra_http_headers={"Authorization": f"token {token}"})
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    try:
        yield context
    finally:
        context.close()
        shutil.rmtree(profile, ignore_errors=True)


def open_lab(context, url: str):
    """JupyterLab at `url` (…/lab), once its file browser has listed the home directory."""
    page = context.pages[0] if context.pages else context.new_page()
    page.goto(url, wait_until="domcontentloaded")
    page.locator(".jp-DirListing-content").wait_for()
    page.locator(".jp-DirListing-item").first.wait_for()
    return page


def file_names(page) -> list[str]:
    return [name.strip() for name in page.locator(".jp-DirListing-item .jp-DirListing-itemText").all_inner_texts()]


def nbgrader_menu_items(page) -> list[str]:
    """The entries of JupyterLab's Nbgrader menu (none: no menu at all)."""
    menu = page.locator(".lm-MenuBar-itemLabel", has_text="Nbgrader")
    if menu.count() == 0:
        return []
    menu.first.click()
    items = page.locator(".lm-Menu-content .lm-Menu-itemLabel").all_inner_texts()
    page.keyboard.press("Escape")
    return [item.strip() for item in items if item.strip()]


def open_from_nbgrader_menu(page, item: str):
    page.locator(".lm-MenuBar-itemLabel", has_text="Nbgrader").first.click()
    page.locator(".lm-Menu-content .lm-Menu-itemLabel", has_text=item).first.click()


def screenshot(page, directory: Path, name: str) -> Path:
    """A full-page PNG in `directory`, copied to the artifacts directory."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    target = artifacts_dir()
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy2(path, target / path.name)
    return path

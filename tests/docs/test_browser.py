"""Headless Chromium renders the front page, the API reference and a tutorial without a console message,
the site opened from disk (file://, as the README says) navigates and searches, and the screenshots kept
for review under docs/screenshots/ are there (refresh them with `python -m tests.docs.browser`)."""

from __future__ import annotations

import pytest
from tests.docs.browser import PAGES, SCREENSHOTS, DevTools, find_browser, render, serve

PNG = b"\x89PNG\r\n\x1a\n"


def test_screenshots_for_review_are_kept():
    for name, _ in PAGES.values():
        path = SCREENSHOTS / name
        assert path.is_file() and path.read_bytes()[:8] == PNG, f"{path} missing: python -m tests.docs.browser"


@pytest.mark.parametrize("page", list(PAGES), ids=[name for name, _ in PAGES.values()])
def test_page_renders_in_chromium_without_console_messages(page, site, tmp_path):
    browser = find_browser()
    if browser is None:
        pytest.skip("no Chromium on this machine (apt-get install chromium; .ci/run installs it where apt works)")
    name, must_contain = PAGES[page]
    with serve(site) as base:
        rendered = render(browser, base + page, tmp_path / name)
    assert rendered.console == [], f"{page or 'front page'}: console messages {rendered.console}"
    assert must_contain in rendered.dom
    assert (tmp_path / name).stat().st_size > 10_000  # a rendered page, not a blank one


def test_the_site_opened_from_disk_follows_a_navigation_link_and_searches(site):
    browser = find_browser()
    if browser is None:
        pytest.skip("no Chromium on this machine (apt-get install chromium; .ci/run installs it where apt works)")
    front = (site / "index.html").as_uri()
    with DevTools(browser, front) as page:
        page.evaluate("[...document.querySelectorAll('a.md-nav__link')]"
                      ".find(a => a.getAttribute('href') == 'getting-started.html').click()")
        heading = page.wait_for("location.href.endsWith('/getting-started.html') && document.readyState == "
                                "'complete' && document.querySelector('h1').textContent")
        assert heading and heading.startswith("Getting started")
        page.goto(front + "?q=imputation")  # the theme's search opens with the query of ?q=
        found = page.wait_for("document.querySelectorAll('.md-search-result__item').length")
        assert found, page.evaluate("document.querySelector('.md-search-result__meta').textContent")
        links = page.evaluate("[...document.querySelectorAll('.md-search-result__item a')].map(a => a.href)")
        assert any(link.startswith(site.as_uri()) and ".html" in link for link in links), links

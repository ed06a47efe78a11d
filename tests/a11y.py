"""Page checks for the browser tests, by real tools: axe-core (vendored from npm, see
tests/vendor/axe-core/README.md) for accessibility, measured tap targets, horizontal overflow,
and a screenshot of the page at the tablet viewport in the test run's artefacts."""

from __future__ import annotations

import os
import re
from pathlib import Path

from pocprint.config import REPO_ROOT

AXE = REPO_ROOT / "tests" / "vendor" / "axe-core" / "axe.min.js"
MIN_TARGET_PX = 44
BLOCKING = ("serious", "critical")


def artefacts_dir() -> Path:
    """Where screenshots go: $POCPRINT_TEST_ARTIFACTS, else var/test-artifacts/ (kept after
    the run; CI keeps the folder with the run's output)."""
    path = Path(os.environ.get("POCPRINT_TEST_ARTIFACTS", REPO_ROOT / "var" / "test-artifacts"))
    path = path / "screens"
    path.mkdir(parents=True, exist_ok=True)
    return path


def axe_violations(page) -> list[dict]:
    """axe-core's serious and critical violations on the page as it is now. The script is
    evaluated through the browser's debugging protocol, not added as a <script>, so a strict
    Content-Security-Policy on the page does not stop it."""
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.evaluate(AXE.read_text(encoding="utf-8") + "\n;undefined")
    result = page.evaluate(
        """async () => {
            const r = await axe.run(document, {resultTypes: ['violations']});
            return r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                nodes: v.nodes.slice(0, 6).map(n => n.target.join(' ') + ' :: ' +
                    (n.failureSummary || '').split('\\n').slice(1, 2).join(''))}));
        }"""
    )
    return [v for v in result if v["impact"] in BLOCKING]


SMALL_TARGETS = """(min) => {
    const seen = [];
    const nodes = document.querySelectorAll(
        'a[href], button, input:not([type=hidden]), select, textarea, summary, [role=button]');
    for (const el of nodes) {
        const style = getComputedStyle(el);
        if (style.visibility === 'hidden' || style.display === 'none') continue;
        let box = el.getBoundingClientRect();
        if (box.width === 0 && box.height === 0) continue;  // not shown (closed details)
        if (el.closest('details:not([open])') && el.tagName !== 'SUMMARY') continue;
        // A radio button or checkbox is tapped through its label.
        if (el.matches('input[type=radio], input[type=checkbox]') && el.closest('label')) {
            box = el.closest('label').getBoundingClientRect();
        }
        if (box.height < min - 0.5 || box.width < min - 0.5) {
            const text = (el.innerText || el.value || el.getAttribute('aria-label') ||
                el.name || '').trim().slice(0, 40);
            seen.push(`${el.tagName.toLowerCase()} "${text}" ${Math.round(box.width)}x${Math.round(box.height)}`);
        }
    }
    return seen;
}"""


def small_targets(page) -> list[str]:
    """Every visible tap target smaller than 44 x 44 CSS px."""
    return page.evaluate(SMALL_TARGETS, MIN_TARGET_PX)


def horizontal_overflow(page) -> int:
    """How many CSS px the page is wider than the viewport (0: none)."""
    return page.evaluate(
        "() => Math.max(0, document.documentElement.scrollWidth - window.innerWidth)"
    )


def check_page(page, name: str) -> dict:
    """Screenshot the page, then every check; returns what failed (empty lists: all passed)."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-")
    page.screenshot(path=str(artefacts_dir() / f"{safe}.png"), full_page=True)
    return {
        "axe": axe_violations(page),
        "small_targets": small_targets(page),
        "overflow_px": horizontal_overflow(page),
    }


def assert_page_ok(page, name: str) -> None:
    problems = check_page(page, name)
    failed = {k: v for k, v in problems.items() if v}
    assert not failed, f"{name} ({page.url}): {failed}"

"""Issue 21: the pages run in Chromium *with* their Content-Security-Policy enforced (the
other browser tests bypass it to evaluate scripts) and report no violation and no console
error: /join (a real call link), /console (logged in), every /static/*.html."""

from __future__ import annotations

import shutil
import tempfile
from urllib.parse import quote, urlsplit

import pytest

from relay.web.pages import STATIC
from tests.browser import CHROMIUM, FLAGS, require_chromium
from tests.test_store_world import PASSWORD

pytestmark = pytest.mark.timeout(180)

LISTEN = """() => {
    window.__violations = [];
    document.addEventListener('securitypolicyviolation', (e) =>
        window.__violations.push(`${e.violatedDirective} ${e.blockedURI} ${e.sourceFile}`));
}"""


EXPECTED_REFUSALS = {
    ("/favicon.ico", 404),
    ("/api/v1/staff/me", 401),  # the console asks who is signed in
    ("/api/v1/family/me", 401),  # the app asks the same
}
"""No favicon; the console asks who is logged in before anyone is."""


def _console(problems: list[str], path: str, msg) -> None:
    # a refused request is reported as a console error: judged by its response instead
    if msg.type == "error" and not msg.text.startswith("Failed to load resource"):
        problems.append(f"{path}: console {msg.text}")


def _response(problems: list[str], path: str, response) -> None:
    got = (urlsplit(response.url).path, response.status)
    if response.status >= 400 and got not in EXPECTED_REFUSALS:
        problems.append(f"{path}: {got}")


async def test_pages_run_with_the_csp_enforced_and_violate_nothing(product):
    from playwright.async_api import async_playwright

    require_chromium()
    booking = product.booking_now(seconds=600)
    join = f"/join?token={quote(await product.family_token(booking))}"
    pages = [join, "/console", *(f"/static/{p.name}" for p in sorted(STATIC.glob("*.html")))]
    profile = tempfile.mkdtemp(prefix="chromium-csp-")
    problems: list[str] = []
    try:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch_persistent_context(
                profile,
                executable_path=CHROMIUM,
                headless=True,
                args=FLAGS,
                bypass_csp=False,
            )
            try:
                for path in pages:
                    page = await browser.new_page()
                    page.on("console", lambda msg, path=path: _console(problems, path, msg))
                    page.on("response", lambda r, path=path: _response(problems, path, r))
                    page.on("pageerror", lambda exc, path=path: problems.append(f"{path}: {exc}"))
                    await page.add_init_script(f"({LISTEN})()")
                    response = await page.goto(product.url + path)
                    assert response is not None and response.status == 200, path
                    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
                    if path == "/console":  # log in, so the console's scripts all run
                        await page.get_by_label("Username").fill("officer_a")
                        await page.get_by_label("Password").fill(PASSWORD)
                        await page.get_by_role("button", name="Log in").click()
                        await page.wait_for_selector(
                            f'#calls tr[data-booking="{booking}"]', timeout=15000
                        )
                    if path == join:  # the call page joins with the fake camera
                        await page.wait_for_function(
                            "() => window.__call && window.__call.joins === 1", timeout=20000
                        )
                    await page.wait_for_timeout(1000)
                    problems.extend(
                        f"{path}: CSP {v}" for v in await page.evaluate("() => window.__violations")
                    )
                    # the policy is really enforced: an inline script is refused (that
                    # refusal, expected, is the only report it may add)
                    expected_from = len(problems)
                    await page.evaluate("""() => { const s = document.createElement('script');
                        s.textContent = 'window.__inline = 1'; document.body.append(s); }""")
                    assert await page.evaluate("() => window.__inline") is None, path
                    assert await page.evaluate("() => window.__violations.length") >= 1, path
                    await page.wait_for_timeout(200)
                    del problems[expected_from:]
                    await page.close()
            finally:
                await browser.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    assert not problems, "\n".join(problems)

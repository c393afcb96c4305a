"""The audit page in headless Chromium: filter the log with the form (htmx swaps the table,
the address bar keeps the filters), then export the filtered rows as CSV and read the file."""

from __future__ import annotations

import csv
import io
import json
import re

from playwright.async_api import Browser, expect

from tests.browser.test_dashboard import add_teammate, log_in
from tests.integration.audit_sample import TRICKY, matching, seed
from tests.support import Server


async def test_filter_the_audit_log_and_export_what_is_shown(
    browser: Browser, demo: Server
) -> None:
    await seed(demo)
    await add_teammate(demo, "lena", "support-lead")
    page = await log_in(browser, demo, "lena")
    await page.evaluate("window.__unreloaded = true")
    await page.get_by_role("link", name="Audit log").click()
    await expect(page).to_have_url(demo.url + "/dashboard/audit")
    await expect(page.get_by_role("heading", name="Audit log")).to_be_visible()
    rows = page.locator("tr.audit-row")
    await expect(rows).to_have_count(len(matching(lambda e: True)))

    await page.evaluate("window.__unreloaded = true")
    await page.get_by_label("cancelled").check()
    cancelled = matching(lambda e: e.status == "cancelled")
    await expect(rows).to_have_count(len(cancelled))
    await expect(rows.locator(".status")).to_have_text(["cancelled"] * len(cancelled))
    await expect(page).to_have_url(re.compile(r"/dashboard/audit\?status=cancelled$"))
    assert await page.evaluate("window.__unreloaded === true")  # swapped, not reloaded

    await page.get_by_label("Decided by", exact=True).select_option("visitor")
    await page.get_by_role("button", name="Filter").click()
    await expect(page).to_have_url(re.compile(r"status=cancelled&decided_by=visitor$"))
    await expect(rows).to_have_count(len(cancelled))  # every cancel is a visitor's

    await page.get_by_label("failed").check()
    both = r"status=failed&status=cancelled&decided_by=visitor$"  # in the form's order
    await expect(page).to_have_url(re.compile(both))
    wanted = matching(
        lambda e: e.status in {"cancelled", "failed"} and (e.decided_by or "").startswith("user:")
    )
    await expect(rows).to_have_count(len(wanted))

    async with page.expect_download() as caught:
        await page.get_by_role("link", name="Export CSV").click()
    download = await caught.value
    assert re.fullmatch(r"signoff-audit-\d{8}T\d{6}Z\.csv", download.suggested_filename)
    text = (await download.path()).read_text(encoding="utf-8")
    exported = list(csv.DictReader(io.StringIO(text, newline="")))
    assert [json.loads(r["params"])["n"] for r in exported] == sorted(wanted)
    assert {r["status"] for r in exported} == {"cancelled", "failed"}
    assert next(r for r in exported if r["status"] == "failed")["error"] == TRICKY

    # The address holds the filters: a reload shows the same rows, the form filled in.
    await page.reload()
    await expect(rows).to_have_count(len(wanted))
    await expect(page.get_by_label("failed")).to_be_checked()

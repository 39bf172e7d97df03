// The alarm page on a phone: Playwright driving Debian's Chromium at 375×812 opens the link a
// notification carried, is sent through the login, comes back to the alarm's page, and the
// operator acknowledges the alarm there with a comment.
//
//   node tests/console/alarm_page.mjs <link> <artifact-dir>
//
// Started by tests/notify_console.rs, which passes the operator in CG_USER (JSON: {name,
// password}). The last line is `N passed, N failed`.
import { test, assert, launch, finish } from "./harness.mjs";
import { mkdirSync } from "node:fs";

const [link, artifacts] = process.argv.slice(2);
if (!link || !artifacts) {
  console.error("usage: node alarm_page.mjs <link> <artifact-dir>");
  process.exit(2);
}
mkdirSync(artifacts, { recursive: true });
const user = JSON.parse(process.env.CG_USER || "{}");
const id = (link.match(/#\/alarms\/(\d+)$/) || [])[1];


const browser = await launch();
const errors = [];
try {
  const context = await browser.newContext({
    viewport: { width: 375, height: 812 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true,
    locale: "zh-CN", timezoneId: "Asia/Shanghai",
  });
  const page = await context.newPage();
  page.on("pageerror", (e) => { errors.push(e.message); console.log(`  [page error] ${e.message}`); });

  await test("the link from the message leads a phone that is not logged in to the login page", async () => {
    assert(id, `the link names an alarm: ${link}`);
    await page.goto(link);
    await page.waitForURL(/\/login\?next=/, { timeout: 5000 });
    const next = new URL(page.url()).searchParams.get("next");
    assert(next === `/#/alarms/${id}`, `next = ${next}`);
    await page.screenshot({ path: `${artifacts}/alarm-page-login.png`, fullPage: true });
  });

  await test("after the login the phone is back on the alarm's own page, which fits 375 px", async () => {
    await page.fill("#login-name", user.name);
    await page.fill("#login-password", user.password);
    await page.click("#login-submit");
    await page.waitForURL((url) => url.hash === `#/alarms/${id}`, { timeout: 5000 });
    await page.waitForSelector("#view-alarm:not([hidden]) #alarm-title", { timeout: 5000 });
    const title = await page.textContent("#alarm-title");
    assert(title.includes(`#${id}`) && title.includes("火警"), `title: ${title}`);
    assert(await page.getAttribute("#alarm-state", "data-state") === "active_unacked", "unacknowledged");
    // The journal shows the notification that brought us here.
    await page.waitForSelector('#alarm-journal li[data-transition="notified"]', { timeout: 5000 });
    const notified = await page.textContent('#alarm-journal li[data-transition="notified"]');
    assert(notified.includes("通知") && notified.includes("已送达"), `journal: ${notified}`);
    assert(await page.$("#alarm-chart"), "the readings around the alarm are drawn");
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth);
    assert(overflow <= 375, `page is ${overflow} px wide at 375`);
    const box = await page.locator("#alarm-ack-button").boundingBox();
    assert(box && box.x >= 0 && box.x + box.width <= 375 && box.height >= 36, `ack button: ${JSON.stringify(box)}`);
    await page.screenshot({ path: `${artifacts}/alarm-page-375.png`, fullPage: true });
  });

  await test("the operator acknowledges the alarm there with a comment", async () => {
    await page.fill("#alarm-ack-comment", "值班员已到现场，确认为实验加热");
    await page.click("#alarm-ack-button");
    await page.waitForSelector('#alarm-state[data-state="active_acked"]', { timeout: 5000 });
    await page.waitForSelector('#alarm-journal li[data-transition="acknowledged"]', { timeout: 5000 });
    const acked = await page.textContent('#alarm-journal li[data-transition="acknowledged"]');
    assert(acked.includes("值班员已到现场"), `journal: ${acked}`);
    assert(!(await page.$("#alarm-ack-button")), "no acknowledge button on an acknowledged alarm");
    await page.screenshot({ path: `${artifacts}/alarm-page-acked.png`, fullPage: true });
  });

  await test("no script error", async () => { assert(errors.length === 0, errors.join("\n")); });
} finally {
  await browser.close();
}
finish();

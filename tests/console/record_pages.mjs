// The control room's record in a real browser: Playwright driving Debian's Chromium. An admin
// follows the control view's link to the devices page, registers an unregistered device
// there (its next reading raises an alarm by its new profile, checked by the Rust side),
// edits its threshold override (the next reading is judged by it) and sees both changes in
// the device's audit; a config-file device is read-only; the new alarm is announced to screen
// readers and the flashing can be turned off; the history page lists the alarm and exports
// the selection as CSV with Chinese headers.
//
//   node tests/console/record_pages.mjs <base-url> <artifact-dir>
//
// Started by tests/record_console.rs, which passes the admin in CG_USER (JSON: {name,
// password}) and answers `NEED …` lines on stdout through stdin. The last line is
// `N passed, N failed`.
import { test, assert, need, launch, finish } from "./harness.mjs";
import { mkdirSync, readFileSync } from "node:fs";

const [base, artifacts] = process.argv.slice(2);
if (!base || !artifacts) {
  console.error("usage: node record_pages.mjs <base-url> <artifact-dir>");
  process.exit(2);
}
mkdirSync(artifacts, { recursive: true });
const user = JSON.parse(process.env.CG_USER || "{}");


// As a desktop browser does: no sound before the user clicks on the page.
const browser = await launch(["--autoplay-policy=user-gesture-required"]);
const errors = [];
const NEW = "xhsy/new-1";
try {
  const context = await browser.newContext({
    viewport: { width: 1280, height: 900 }, locale: "zh-CN", timezoneId: "Asia/Shanghai", acceptDownloads: true,
  });
  const page = await context.newPage();
  page.on("pageerror", (e) => { errors.push(e.message); console.log(`  [page error] ${e.message}`); });
  page.on("dialog", (d) => d.accept());

  await test("the admin logs in and the control view links to the history and the devices page", async () => {
    await page.goto(base + "/login");
    await page.fill("#login-name", user.name);
    await page.fill("#login-password", user.password);
    await page.click("#login-submit");
    await page.waitForSelector("#view-control:not([hidden]) #link-devices", { timeout: 5000 });
    assert(await page.textContent("#link-history") === "报警记录", "history link");
    await page.click("#link-devices");
    await page.waitForSelector(`#view-devices:not([hidden]) tr[data-device="${NEW}"]`, { timeout: 5000 });
    const reg = await page.getAttribute(`tr[data-device="${NEW}"]`, "data-registration");
    assert(reg === "unregistered", `registration: ${reg}`);
  });

  await test("a config-file device is read-only on the devices page and says so", async () => {
    await page.click('tr[data-device="xhsy/room-1"]');
    await page.waitForSelector("#device-readonly", { timeout: 5000 });
    assert((await page.textContent("#device-readonly")).includes("配置文件"), "says why");
    assert(!(await page.$("#device-form")), "no form for a config-file device");
  });

  await test("the admin registers the unregistered device with a profile and a place", async () => {
    await page.click(`tr[data-device="${NEW}"]`);
    await page.waitForSelector("#device-form #device-profile", { timeout: 5000 });
    await page.fill("#device-profile", "test_room");
    await page.fill("#device-building", "实验楼");
    await page.fill("#device-room", "301");
    await page.fill("#device-name", "三楼实验室");
    await page.click("#device-save");
    await page.waitForSelector(`tr[data-device="${NEW}"][data-registration="console"]`, { timeout: 5000 });
    await page.waitForSelector('#device-audit li[data-action="register"]', { timeout: 5000 });
    await page.screenshot({ path: `${artifacts}/devices-registered.png`, fullPage: true });
    await need("reading 35");
  });

  await test("the new alarm is announced to screen readers, and the flashing can be turned off", async () => {
    await page.waitForFunction(() => document.getElementById("alarm-announcer").textContent.includes("xhsy"), null, { timeout: 5000 });
    const said = await page.textContent("#alarm-announcer");
    assert(said.includes("监管") && said.includes("实验楼"), `announced: ${said}`);
    assert(await page.getAttribute("#alarm-announcer", "aria-live") === "assertive", "a live region");
    const flashing = () => page.evaluate(() => getComputedStyle(document.querySelector(".sound-flag")).animationName);
    assert(await flashing() !== "none", "the unacknowledged flag flashes");
    await page.click("#motion-toggle");
    assert(await page.getAttribute("body", "data-motion") === "reduced", "reduced motion on");
    assert(await flashing() === "none", "no flashing with reduced motion");
    assert(await page.getAttribute("#motion-toggle", "aria-pressed") === "true", "the toggle says so");
    await page.click("#motion-toggle");
  });

  await test("after a reload the console asks for a click to re-enable the alarm sound, and the click does", async () => {
    await page.reload();
    await page.waitForSelector('body[data-sound="on"]', { timeout: 5000 });
    await page.waitForSelector("#sound-prompt:not([hidden])", { timeout: 5000 });
    assert((await page.textContent("#sound-prompt")).includes("声音"), "the prompt speaks Chinese");
    await page.click("#sound-prompt");
    await page.waitForSelector("#sound-prompt", { state: "hidden", timeout: 5000 });
    assert(await page.evaluate(() => document.body.dataset.sound) === "on", "still ringing after the click");
    // Back to the device the next steps edit.
    await page.click(`tr[data-device="${NEW}"]`);
    await page.waitForSelector("#device-form", { timeout: 5000 });
  });

  await test("an override edited in the console changes the threshold at once and is audited", async () => {
    await page.waitForSelector("#device-overrides", { timeout: 5000 });
    await page.fill("#device-overrides", '{"temp_high": {"alarm": 33}}');
    await page.click("#overrides-save");
    await page.waitForSelector('#device-audit li[data-action="overrides"]', { timeout: 5000 });
    const entry = await page.textContent('#device-audit li[data-action="overrides"]');
    assert(entry.includes(user.name) && entry.includes("33"), `audit: ${entry}`);
    await page.screenshot({ path: `${artifacts}/devices-override.png`, fullPage: true });
    await need("reading 35.5");
  });

  await test("the history page lists the device's alarm and exports it as CSV with Chinese headers", async () => {
    await page.goto(base + "/#/history");
    await page.waitForSelector("#view-history:not([hidden]) #history-filters", { timeout: 5000 });
    await page.fill("#history-building", "实验楼");
    await page.click("#history-search");
    await page.waitForSelector("#history-body tr.history-row", { timeout: 5000 });
    const row = await page.textContent("#history-body tr.history-row");
    assert(row.includes("new-1") && row.includes("实验楼"), `row: ${row}`);
    const [download] = await Promise.all([page.waitForEvent("download"), page.click("#history-export-csv")]);
    const csv = readFileSync(await download.path(), "utf8");
    assert(csv.includes("编号,报警时间,学校,楼栋"), `csv header: ${csv.slice(0, 80)}`);
    assert(csv.includes("new-1"), "the alarm is exported");
    await page.screenshot({ path: `${artifacts}/history.png`, fullPage: true });
    // The row opens the alarm's page with its journal.
    await page.click("#history-body tr.history-row a");
    await page.waitForSelector("#view-alarm:not([hidden]) #alarm-journal li", { timeout: 5000 });
  });

  await test("no script error", async () => { assert(errors.length === 0, errors.join("\n")); });
} finally {
  await browser.close();
}
finish();

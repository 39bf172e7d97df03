// Incident reports and the board on a phone, in a real browser (Playwright driving Debian's
// Chromium). At 375×812 the operator sees the live fire alarm first, as a card wide enough to
// read, above the school summary, and acknowledges it with the card's button; the fire's
// temperature comes back down (the Rust side publishes it); on the alarm's page the chart of
// the readings around the raise is drawn; the operator resets the alarm as a real fire and
// fills in the incident report the dialog leads to, and submits it. The bureau's view lists it.
//
//   node tests/console/incidents.mjs <base-url> <alarm-id> <artifact-dir>
//
// Started by tests/incidents.rs, which passes the operator and the bureau user in CG_USERS
// (JSON: {operator: {name, password}, bureau: {…}}) and answers `NEED …` lines on stdout
// through stdin. The last line is `N passed, N failed`.
import { test, assert, need, launch, localInput, finish } from "./harness.mjs";
import { mkdirSync } from "node:fs";

const [base, alarmId, artifacts] = process.argv.slice(2);
if (!base || !alarmId || !artifacts) {
  console.error("usage: node incidents.mjs <base-url> <alarm-id> <artifact-dir>");
  process.exit(2);
}
mkdirSync(artifacts, { recursive: true });
const users = JSON.parse(process.env.CG_USERS || "{}");

async function login(page, user) {
  await page.goto(base + "/login");
  await page.fill("#login-name", user.name);
  await page.fill("#login-password", user.password);
  await page.click("#login-submit");
}

const browser = await launch();
const errors = [];
const card = `#board-body tr.alarm[data-id="${alarmId}"]`;
let incidentId = null;
try {
  const phone = await browser.newContext({
    viewport: { width: 375, height: 812 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true,
    locale: "zh-CN", timezoneId: "Asia/Shanghai",
  });
  const page = await phone.newPage();
  page.on("pageerror", (e) => { errors.push(e.message); console.log(`  [page error] ${e.message}`); });

  await test("on a phone the live fire alarm comes first, as a card at least 300 px wide, above the summary", async () => {
    await login(page, users.operator);
    await page.waitForSelector(`#view-control:not([hidden]) ${card}`, { timeout: 5000 });
    const cardBox = await page.locator(card).boundingBox();
    const summary = await page.locator("#view-control table.summary").boundingBox();
    assert(cardBox && summary && cardBox.y + cardBox.height <= summary.y, `card ${JSON.stringify(cardBox)} summary ${JSON.stringify(summary)}`);
    const kpis = await page.locator("#kpis").boundingBox();
    assert(!kpis || cardBox.y < kpis.y, `card below the health strip: ${JSON.stringify(kpis)}`);
    const widths = await page.$$eval("#board-body tr.alarm", (rows) => rows.map((r) => r.getBoundingClientRect().width));
    assert(widths.length >= 1 && widths.every((w) => w >= 300), `card widths ${widths}`);
    // No header squeezed into a narrow column: the table's header is not shown, every cell
    // is a line of the card as wide as the card.
    assert(!(await page.isVisible("#view-control table.board thead")), "the board's header is hidden on a phone");
    const cells = await page.$$eval(`${card} td`, (tds) => tds.map((td) => td.getBoundingClientRect().width));
    assert(cells.every((w) => w >= 280), `cell widths ${cells}`);
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth);
    assert(overflow <= 375, `page is ${overflow} px wide at 375`);
    const ack = await page.locator(`${card} button.ack`).boundingBox();
    assert(ack && ack.height >= 40, `ack button ${JSON.stringify(ack)}`);
    await page.screenshot({ path: `${artifacts}/incidents-board-375.png`, fullPage: true });
  });

  await test("the operator acknowledges the fire with the card's button", async () => {
    await page.tap(`${card} button.ack`);
    await page.waitForSelector("#action-dialog[open]", { timeout: 5000 });
    await page.fill('#action-fields textarea[name="comment"]', "值班员已赶往现场");
    await page.click("#action-submit");
    await page.waitForSelector(`${card}[data-state="active_acked"]`, { timeout: 5000 });
  });

  await test("the alarm's page draws the readings around the raise as a line with the threshold", async () => {
    await need("back to normal");
    await page.goto(`${base}/#/alarms/${alarmId}`);
    await page.waitForSelector("#view-alarm:not([hidden]) #alarm-chart path.series", { timeout: 5000 });
    const points = Number(await page.getAttribute("#alarm-chart path.series", "data-points"));
    const d = await page.getAttribute("#alarm-chart path.series", "d");
    const vertices = (d.match(/[ML]/g) || []).length;
    assert(points >= 2 && vertices === points, `path with ${points} points: ${d}`);
    assert(await page.$("#alarm-chart line.threshold"), "the threshold line");
    await page.screenshot({ path: `${artifacts}/incidents-alarm-chart.png`, fullPage: true });
  });

  await test("resetting the fire asks real, false or test; a real fire leads to the incident report's form", async () => {
    await page.waitForSelector("#alarm-reset-button", { timeout: 5000 });
    await page.tap("#alarm-reset-button");
    await page.waitForSelector("#action-dialog[open] #reset-disposition", { timeout: 5000 });
    const choices = await page.$$eval('#reset-disposition input[name="disposition"]', (els) => els.map((e) => e.value));
    assert(JSON.stringify(choices) === JSON.stringify(["real", "false", "test"]), `choices ${choices}`);
    await page.screenshot({ path: `${artifacts}/incidents-reset-dialog.png` });
    await page.check("#disposition-real");
    await page.fill('#action-fields textarea[name="comment"]', "化学实验室通风橱起火，已扑灭");
    await page.click("#action-submit");
    await page.waitForURL((url) => url.hash === `#/incidents/new/${alarmId}`, { timeout: 5000 });
    await page.waitForSelector("#view-incidents:not([hidden]) #incident-form", { timeout: 5000 });
    const what = await page.inputValue("#incident-what_happened");
    assert(what.includes("通风橱起火"), `prefilled: ${what}`);
    assert(await page.inputValue("#incident-building") === "实验楼", "building from the alarm's device");
  });

  await test("the operator fills in the report and submits it", async () => {
    await page.fill("#incident-actions_taken", "使用二氧化碳灭火器扑灭，疏散三楼师生");
    await page.fill("#incident-injuries", "1");
    await page.fill("#incident-reported_119_by", "张老师");
    // In the browser's time zone (Asia/Shanghai), whatever this machine's is.
    const called = await page.evaluate(() => Date.now() - 60_000);
    await page.fill("#incident-reported_119_at", await page.evaluate(localInput, called));
    await page.screenshot({ path: `${artifacts}/incidents-form-375.png`, fullPage: true });
    await page.tap("#incident-submit");
    await page.waitForSelector('#incident-status[data-status="submitted"]', { timeout: 5000 });
    incidentId = decodeURIComponent(new URL(page.url()).hash.replace("#/incidents/", ""));
    assert(/^XHSY-INC-\d{6}-\d{4}$/.test(incidentId), `report number ${incidentId}`);
    const facts = await page.textContent("#incident-facts");
    assert(facts.includes("张老师") && facts.includes("受伤人数 1"), `facts: ${facts}`);
    // The time of the alarm, to the second (the form's minutes did not replace it).
    const alarm = await page.evaluate((id) => fetch("/api/v1/alarms/" + id).then((r) => r.json()), alarmId);
    const report = await page.evaluate((id) => fetch("/api/v1/incidents/" + id).then((r) => r.json()), incidentId);
    assert(report.occurred_at === alarm.raised_at, `occurred_at ${report.occurred_at} vs raised_at ${alarm.raised_at}`);
    assert(Math.abs(report.reported_119_at - (called - called % 60_000)) < 1000, `119 at ${report.reported_119_at} vs ${called}`);
    assert(!(await page.$("#incident-form")), "a submitted report has no form");
    await page.screenshot({ path: `${artifacts}/incidents-submitted-375.png`, fullPage: true });
    console.log(`INCIDENT ${incidentId}`);
  });

  await test("the alarm's page links to its report, which opens the same report", async () => {
    await page.goto(`${base}/#/alarms/${alarmId}`);
    await page.waitForSelector("#view-alarm:not([hidden]) #alarm-incident-link", { timeout: 5000 });
    const badge = await page.getAttribute('#alarm-journal li[data-transition="reset"] .badge.disposition', "data-disposition");
    assert(badge === "real", `the reset's disposition in the journal: ${badge}`);
    await page.tap("#alarm-incident-link");
    await page.waitForURL((url) => url.hash === `#/incidents/${incidentId}`, { timeout: 5000 });
    await page.waitForSelector('#view-incidents:not([hidden]) #incident-status[data-status="submitted"]', { timeout: 5000 });
  });

  await test("the bureau's view lists the report with its school", async () => {
    const desk = await browser.newContext({ viewport: { width: 1280, height: 900 }, locale: "zh-CN", timezoneId: "Asia/Shanghai" });
    const bureau = await desk.newPage();
    bureau.on("pageerror", (e) => { errors.push(e.message); console.log(`  [page error] ${e.message}`); });
    await login(bureau, users.bureau);
    const row = `#view-bureau:not([hidden]) #bureau-incidents tr[data-incident="${incidentId}"]`;
    await bureau.waitForSelector(row, { timeout: 5000 });
    assert(await bureau.getAttribute(row, "data-status") === "submitted", "submitted");
    const text = await bureau.textContent(row);
    assert(text.includes("星海") || text.includes("xhsy"), `row: ${text}`);
    await bureau.click(`${row} a`);
    await bureau.waitForSelector('#view-incidents:not([hidden]) #incident-status[data-status="submitted"]', { timeout: 5000 });
    await bureau.screenshot({ path: `${artifacts}/incidents-bureau.png`, fullPage: true });
    await desk.close();
  });

  await test("no script error", async () => { assert(errors.length === 0, errors.join("\n")); });
} finally {
  await browser.close();
}
finish();

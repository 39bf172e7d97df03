// The duty log in a real browser: Playwright driving Debian's Chromium. An operator follows the
// control view's link to the duty log and signs on; a fire is raised (by the Rust side) and
// shows on the board without the unattended badge; the operator acknowledges it; the day's
// log lists the raise, the acknowledgement and the reset as a real fire with the operator on duty; the print layout
// (emulated print media) hides the console and shows the record's header and signature
// lines, and prints to an A4 PDF; the operator hands over with notes; a fire raised with
// nobody on duty carries the 无人值守 badge on the board.
//
//   node tests/console/duty_page.mjs <base-url> <artifact-dir>
//
// Started by tests/duty_console.rs, which passes the operator in CG_USER (JSON: {name,
// password}) and answers `NEED …` lines on stdout through stdin. The last line is
// `N passed, N failed`.
import { test, assert, need, launch, localInput, finish } from "./harness.mjs";
import { mkdirSync, readFileSync } from "node:fs";

const [base, artifacts] = process.argv.slice(2);
if (!base || !artifacts) {
  console.error("usage: node duty_page.mjs <base-url> <artifact-dir>");
  process.exit(2);
}
mkdirSync(artifacts, { recursive: true });
const user = JSON.parse(process.env.CG_USER || "{}");


const browser = await launch();
const errors = [];
const NOTES = "3 号柜门锁松动，已报修";
const fireRow = (device) => `#board-body tr.alarm.fire[data-sensor^="xhsy/${device}/"][data-rule="temp_fire"]`;
try {
  const context = await browser.newContext({
    viewport: { width: 1280, height: 900 }, locale: "zh-CN", timezoneId: "Asia/Shanghai", acceptDownloads: true,
  });
  const page = await context.newPage();
  page.on("pageerror", (e) => { errors.push(e.message); console.log(`  [page error] ${e.message}`); });
  page.on("dialog", (d) => d.accept());
  let alarmId = null;

  await test("the operator follows the control view's link to the duty log and signs on", async () => {
    await page.goto(base + "/login");
    await page.fill("#login-name", user.name);
    await page.fill("#login-password", user.password);
    await page.click("#login-submit");
    await page.waitForSelector("#view-control:not([hidden]) #link-duty", { timeout: 5000 });
    for (const id of ["#link-history", "#link-devices", "#link-duty"]) assert(await page.$(id), `control view links ${id}`);
    assert(await page.textContent("#link-duty") === "值班记录", "duty link text");
    await page.click("#link-duty");
    await page.waitForSelector("#view-duty:not([hidden]) #duty-sign-on", { timeout: 5000 });
    assert((await page.textContent("#duty-nobody")).includes("无人值班"), "nobody on duty yet");
    await page.fill("#duty-display", "李明");
    await page.click("#duty-sign-on");
    await page.waitForSelector(`#duty-on li[data-user="${user.name}"]`, { timeout: 5000 });
    assert((await page.textContent("#duty-on")).includes("李明"), "the name on the record");
    assert(await page.$("#duty-handover"), "the handover form replaces the sign-on form");
    assert(await page.getAttribute("#duty-staffing", "data-staffing") === "short", "one of two: short-staffed");
  });

  await test("a fire during the shift shows on the board without the unattended badge and is acknowledged", async () => {
    await need("fire det-1");
    await page.goto(base + "/#/control");
    await page.waitForSelector(fireRow("det-1"), { timeout: 10000 });
    assert(!(await page.$(`${fireRow("det-1")} .badge.unattended`)), "attended: no badge");
    alarmId = await page.getAttribute(fireRow("det-1"), "data-id");
    await page.goto(base + "/#/alarms/" + alarmId);
    await page.waitForSelector("#alarm-ack-button", { timeout: 5000 });
    await page.fill("#alarm-ack-comment", "值班员到场确认");
    await page.click("#alarm-ack-button");
    await page.waitForSelector('#alarm-state[data-state="active_acked"]', { timeout: 5000 });
  });

  await test("back to normal, the fire is reset as a real fire and its incident report is filed", async () => {
    await need("normal det-1");
    await page.goto(base + "/#/alarms/" + alarmId);
    await page.waitForSelector("#alarm-reset-button", { timeout: 5000 });
    await page.click("#alarm-reset-button");
    await page.waitForSelector("#action-dialog[open] #reset-disposition", { timeout: 5000 });
    await page.check("#disposition-real");
    await page.fill('#action-fields textarea[name="comment"]', "配电间起火，已扑灭");
    await page.click("#action-submit");
    await page.waitForSelector("#view-incidents:not([hidden]) #incident-form", { timeout: 5000 });
    await page.fill("#incident-actions_taken", "值班员使用灭火器扑灭，疏散师生");
    await page.fill("#incident-reported_119_by", "李明");
    // The call to 119 a minute ago, in the browser's local time (as the form's input takes it).
    const called = await page.evaluate(() => Date.now() - 60_000);
    await page.fill("#incident-reported_119_at", await page.evaluate(localInput, called));
    await page.click("#incident-submit");
    await page.waitForSelector('#incident-status[data-status="submitted"], #incident-error:not([hidden])', { timeout: 5000 });
    const refused = await page.$("#incident-error:not([hidden])");
    assert(!refused, `not submitted: ${refused && await refused.textContent()}`);
    await page.waitForSelector('#incident-status[data-status="submitted"]', { timeout: 5000 });
  });

  await test("the day's duty log lists the raise, the acknowledgement and the reset as a real fire with the operator on duty", async () => {
    await page.goto(base + "/#/duty");
    await page.waitForSelector(`#duty-events tr[data-alarm="${alarmId}"][data-transition="acknowledged"]`, { timeout: 5000 });
    const raised = await page.textContent(`#duty-events tr[data-alarm="${alarmId}"][data-transition="raised"]`);
    assert(raised.includes("火警") && raised.includes("李明"), `raised row: ${raised}`);
    assert(await page.getAttribute(`#duty-events tr[data-alarm="${alarmId}"][data-transition="raised"]`, "data-unattended") === "false", "attended");
    const acked = await page.textContent(`#duty-events tr[data-alarm="${alarmId}"][data-transition="acknowledged"]`);
    assert(acked.includes("值班员到场确认") && acked.includes(user.name), `ack row: ${acked}`);
    const reset = `#duty-events tr[data-alarm="${alarmId}"][data-transition="reset"]`;
    await page.waitForSelector(reset, { timeout: 5000 });
    assert(await page.getAttribute(`${reset} .badge.disposition`, "data-disposition") === "real", "the reset says: a real fire");
    assert((await page.textContent(reset)).includes("真实火警") && (await page.textContent(reset)).includes("李明"), `reset row: ${await page.textContent(reset)}`);
    assert((await page.textContent("#duty-shifts")).includes("李明"), "the shift is listed");
    assert(!(await page.textContent("#view-duty")).includes("null"), "no stray null on the page");
    const [download] = await Promise.all([page.waitForEvent("download"), page.click("#duty-export-csv")]);
    const csv = readFileSync(await download.path(), "utf8");
    assert(csv.includes("时间,事项,学校,报警编号"), `csv header: ${csv.slice(0, 80)}`);
    assert(csv.includes("值班员到场确认"), "the acknowledgement is exported");
    assert(csv.includes("复位（真实火警）"), "the reset and what the fire was are exported");
    await page.screenshot({ path: `${artifacts}/duty-log.png`, fullPage: true });
  });

  await test("the print layout hides the console and shows the record's header and signature lines, on A4", async () => {
    assert(!(await page.isVisible("#duty-print-header")), "no print header on screen");
    await page.emulateMedia({ media: "print" });
    assert(!(await page.isVisible("header.top")), "the console's header is hidden in print");
    assert(!(await page.isVisible("#duty-filters")), "the filters are hidden in print");
    assert(!(await page.isVisible("#duty-print")), "buttons are hidden in print");
    assert(await page.isVisible("#duty-print-header"), "the record's header is printed");
    const header = await page.textContent("#duty-print-header");
    const date = await page.textContent("#duty-log-date");
    assert(header.includes("值班记录") && header.includes("中控室") && header.includes("新华实验小学") && /^\d{4}-\d{2}-\d{2}$/.test(date), `header: ${header}`);
    assert(await page.isVisible("#duty-signatures"), "signature lines are printed");
    assert((await page.textContent("#duty-signatures")).includes("李明"), "a line for the staff on duty");
    assert(await page.isVisible(`#duty-events tr[data-alarm="${alarmId}"]`), "the log is printed");
    const pdf = await page.pdf({ format: "A4", printBackground: false });
    assert(pdf.subarray(0, 4).toString() === "%PDF" && pdf.length > 1000, "a PDF");
    // A4 portrait in points (595 × 842) in the page tree.
    assert(/MediaBox\s*\[\s*0 0 595(\.\d+)? 841(\.\d+)?|MediaBox\s*\[\s*0 0 595(\.\d+)? 842/.test(pdf.toString("latin1")), "A4 pages");
    await page.screenshot({ path: `${artifacts}/duty-print.png`, fullPage: true });
    await page.emulateMedia({ media: "screen" });
  });

  await test("the operator hands over with notes; a fire with nobody on duty is unattended on the board", async () => {
    await page.fill("#duty-notes", NOTES);
    await page.click("#duty-handover");
    await page.waitForSelector("#duty-nobody", { timeout: 5000 });
    assert((await page.textContent("#duty-last-notes")).includes(NOTES), "the handover notes are shown for the next shift");
    await need("fire det-2");
    await page.goto(base + "/#/control");
    await page.waitForSelector(`${fireRow("det-2")} .badge.unattended`, { timeout: 10000 });
    assert(await page.textContent(`${fireRow("det-2")} .badge.unattended`) === "无人值守", "badge text");
    assert(!(await page.$(`${fireRow("det-1")} .badge.unattended`)), "the attended one stays unbadged");
    const unattendedId = await page.getAttribute(fireRow("det-2"), "data-id");
    await page.goto(base + "/#/alarms/" + unattendedId);
    await page.waitForSelector("#alarm-unattended", { timeout: 5000 });
    assert(await page.textContent("#alarm-unattended") === "无人值守", "the alarm's page says so too");
    await page.screenshot({ path: `${artifacts}/duty-unattended.png`, fullPage: true });
  });

  await test("no script error", async () => { assert(errors.length === 0, errors.join("\n")); });
} finally {
  await browser.close();
}
finish();

// What every browser test script here shares: the Chromium launch (Debian's, headless), the
// `test`/`assert` pair that prints `ok - …` / `not ok - …` lines and the closing
// `N passed, N failed` line the Rust side reads, and `need`, which asks the Rust side for
// something only it can do (publish a reading, cut a database) with a `NEED …` line on stdout
// and waits for its `done` on stdin.
import { chromium } from "playwright-core";
import { createInterface } from "node:readline";

const results = { passed: 0, failed: 0 };

export async function test(name, body) {
  const started = Date.now();
  try {
    await body();
    results.passed += 1;
    console.log(`ok - ${name} (${Date.now() - started} ms)`);
  } catch (e) {
    results.failed += 1;
    console.log(`not ok - ${name}: ${e && e.stack ? e.stack : e}`);
  }
}

export function assert(cond, message) { if (!cond) throw new Error(message); }

let answers = null;
export async function need(what) {
  answers ??= createInterface({ input: process.stdin })[Symbol.asyncIterator]();
  console.log(`NEED ${what}`);
  const { value } = await answers.next();
  if (!value || !value.startsWith("done")) throw new Error(`no answer to ${what}: ${value}`);
}

// Chromium headless, as the tests need it; `args` are added (e.g. an autoplay policy).
export function launch(args = []) {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync", ...args],
  });
}

// The value of a datetime-local input for `ms`, in the local time of where it runs (it can be
// passed to page.evaluate: self-contained).
export function localInput(ms) {
  const pad = (n) => String(n).padStart(2, "0");
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

// Prints the closing line and exits non-zero when a test failed.
export function finish() {
  console.log(`${results.passed} passed, ${results.failed} failed`);
  process.exit(results.failed === 0 ? 0 : 1);
}

// Loads one page in headless Chromium (Debian's /usr/bin/chromium driven by playwright-core,
// both installed by scripts/test.sh) and prints what the page put in `window.results` once it
// sets `window.done`, as one JSON line. Used by tests/it/chromium.rs.
//
//   NODE_PATH=target/interop-js/node_modules node tests/browser/page.cjs URL...
//
// Every URL is loaded in turn in the same browser (one page each); the output is a JSON array
// with one entry per URL. Certificate errors are ignored: the agent under test serves a
// certificate made for the test run.
const { launch } = require('./launch.cjs');

(async () => {
  const browser = await launch();
  const out = [];
  try {
    for (const url of process.argv.slice(2)) {
      const context = await browser.newContext({ ignoreHTTPSErrors: true });
      const page = await context.newPage();
      await page.goto(url);
      await page.waitForFunction(() => window.done === true, null, { timeout: 60000 });
      out.push(await page.evaluate(() => window.results));
      await context.close();
    }
  } finally {
    await browser.close();
  }
  process.stdout.write(JSON.stringify(out) + '\n');
})().catch((e) => {
  process.stderr.write(String(e && e.stack || e) + '\n');
  process.exit(1);
});

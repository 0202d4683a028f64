// Loads PAGE_URL (a page served by the agent itself, so the browser holds an HTTP/2
// connection to the agent's origin) in headless Chromium, then opens each WebSocket URL from
// that page in turn, sends a 10,000-byte text message, and prints one JSON line: per URL
// whether it opened, the extensions agreed, whether the echo matched, and the close code.
// Used by tests/it/chromium.rs; same browser flags as page.cjs.
//
//   NODE_PATH=target/interop-js/node_modules node tests/browser/h2.cjs PAGE_URL WS_URL...
const { launch } = require('./launch.cjs');

(async () => {
  const browser = await launch();
  try {
    const context = await browser.newContext({ ignoreHTTPSErrors: true });
    const page = await context.newPage();
    const [pageUrl, ...wsUrls] = process.argv.slice(2);
    const resp = await page.goto(pageUrl);
    const results = await page.evaluate(async (urls) => {
      const out = [];
      for (const url of urls) {
        out.push(await new Promise((done) => {
          const r = { url, opened: false, extensions: null, echo: null, code: null };
          const sent = 'h2' + '{"status":"UP","instance":"dc-1"},'.repeat(10000 / 33);
          const ws = new WebSocket(url);
          ws.onopen = () => { r.opened = true; r.extensions = ws.extensions; ws.send(sent); };
          ws.onmessage = (e) => { r.echo = e.data === sent ? 'same' : 'different'; ws.close(1000); };
          ws.onclose = (e) => { r.code = e.code; done(r); };
        }));
      }
      return out;
    }, wsUrls);
    process.stdout.write(JSON.stringify({ pageStatus: resp && resp.status(), results }) + '\n');
  } finally {
    await browser.close();
  }
})().catch((e) => {
  process.stderr.write(String(e && e.stack || e) + '\n');
  process.exit(1);
});

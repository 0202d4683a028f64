// The headless Chromium the browser tests use (Debian's /usr/bin/chromium driven by
// playwright-core, both installed by scripts/test.sh), with the flags this machine needs: no
// sandbox as root, no background connections to Google's hosts (a closed network refuses
// them), and certificate errors ignored (the agent under test serves a certificate made for
// the test run).
const { chromium } = require('playwright-core');

exports.launch = () =>
  chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--ignore-certificate-errors',
    ],
  });

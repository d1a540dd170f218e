// Opens each of chokepoint's HTML pages in Debian's Chromium (driven by playwright-core, no
// browser download) and checks what a reader relies on: the verdict, the findings and every
// chart are in the DOM and drawn; a table sorts; no console error; no request but the page's own
// file; axe-core finds no serious or critical violation, in light and in dark mode.
//
//   node check.mjs [--screenshots DIR] NAME=PAGE.html ...
//
// Prints one JSON line per page ({name, problems, verdict, findings, charts}); exits 1 when a
// page has a problem.
import { chromium } from 'playwright-core';
import { createRequire } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const require = createRequire(import.meta.url);
const axePath = require.resolve('axe-core/axe.min.js');

const args = process.argv.slice(2);
let screenshots = null;
const pages = [];
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--screenshots') screenshots = args[++i];
  else {
    const at = args[i].indexOf('=');
    pages.push({ name: args[i].slice(0, at), file: path.resolve(args[i].slice(at + 1)) });
  }
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  // This machine's network is closed: Chromium's own background connections are turned off.
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
});

let failed = false;
for (const { name, file } of pages) {
  const problems = [];
  const url = pathToFileURL(file).href;
  const result = { name, file, problems };
  for (const scheme of ['light', 'dark']) {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, colorScheme: scheme });
    const page = await context.newPage();
    page.on('request', (request) => {
      if (request.url() !== url) problems.push(`${scheme}: a request for ${request.url()}`);
    });
    page.on('console', (message) => {
      if (message.type() === 'error') problems.push(`${scheme}: console error: ${message.text()}`);
    });
    page.on('pageerror', (error) => problems.push(`${scheme}: script error: ${error.message}`));
    await page.goto(url, { waitUntil: 'load' });
    if (scheme === 'light') {
      const dom = await page.evaluate(() => {
        const verdict = document.querySelector('#verdict');
        const charts = [...document.querySelectorAll('figure.chart')].map((figure) => {
          const drawing = figure.querySelector('svg, table');
          const box = drawing ? drawing.getBoundingClientRect() : { width: 0, height: 0 };
          const marks = figure.querySelectorAll('svg rect, svg path, svg polyline, svg circle, svg line, td').length;
          return { chart: figure.dataset.chart, width: Math.round(box.width), height: Math.round(box.height), marks };
        });
        return {
          title: document.title,
          verdict: verdict ? verdict.innerText.trim() : '',
          findings: document.querySelectorAll('#findings table tbody tr').length,
          detailed: document.querySelectorAll('details.finding').length,
          charts,
          scripts: document.querySelectorAll('script').length,
        };
      });
      Object.assign(result, dom);
      if (!dom.verdict) problems.push('no verdict');
      for (const chart of dom.charts) {
        if (!chart.width || !chart.height || chart.marks < 3) problems.push(`chart ${chart.chart} is not drawn: ${JSON.stringify(chart)}`);
      }
      if (dom.scripts !== 1) problems.push(`${dom.scripts} scripts on the page`);
      if (screenshots) {
        // The top of the page — the verdict and the pictures — at most 2,400 pixels of it.
        const height = await page.evaluate(() => document.documentElement.scrollHeight);
        await page.screenshot({
          path: path.join(screenshots, `${name}.png`),
          fullPage: true,
          clip: { x: 0, y: 0, width: 1280, height: Math.min(height, 2400) },
        });
      }
      // A click on a column heading sorts the table.
      const heading = page.locator('table.sortable th').first();
      if (await heading.count()) {
        await heading.click();
        const sorted = await heading.getAttribute('aria-sort');
        if (sorted !== 'ascending') problems.push(`sorting a table: aria-sort ${sorted}`);
        await heading.click();
      }
    } else if (screenshots) {
      await page.screenshot({ path: path.join(screenshots, `${name}-dark.png`) });
    }
    await page.addScriptTag({ path: axePath });
    const violations = await page.evaluate(async () => {
      const results = await window.axe.run(document, { resultTypes: ['violations'] });
      return results.violations
        .filter((v) => v.impact === 'serious' || v.impact === 'critical')
        .map((v) => `${v.id} (${v.impact}): ${v.nodes.slice(0, 3).map((n) => n.target.join(' ')).join('; ')}`);
    });
    for (const v of violations) problems.push(`${scheme}: axe: ${v}`);
    await context.close();
  }
  if (problems.length) failed = true;
  console.log(JSON.stringify(result));
}
await browser.close();
process.exit(failed ? 1 : 0);

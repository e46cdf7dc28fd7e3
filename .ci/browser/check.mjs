// Opens an HTML report in headless Chromium and checks that it renders cleanly.
//
//   node check.mjs REPORT_HTML SCREENSHOT_PNG
//
// Fails (exit 1) on any console error, uncaught page error, failed request, request that is not
// to a local file (nothing may be fetched from the network), <img> that does not load
// (naturalWidth == 0) or loads at another size than its PNG file's own (width and height from
// the file's IHDR header), or linked SVG figure that does not load as an image. Always writes a
// full-page screenshot when the page could be opened.
import { chromium } from 'playwright-core';
import { mkdtempSync, rmSync, existsSync, openSync, readSync, closeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const [reportArg, shotArg] = process.argv.slice(2);
if (!reportArg || !shotArg) {
  console.error('usage: node check.mjs REPORT_HTML SCREENSHOT_PNG');
  process.exit(2);
}
const report = resolve(reportArg);
const shot = resolve(shotArg);
if (!existsSync(report)) {
  console.error(`browser-check: no such report: ${report}`);
  process.exit(2);
}
const url = pathToFileURL(report).href;
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';

// Width and height of a PNG file from its IHDR chunk, or null if it is not a PNG.
function pngSize(path) {
  const buf = Buffer.alloc(24);
  const fd = openSync(path, 'r');
  try {
    if (readSync(fd, buf, 0, 24, 0) < 24) return null;
  } finally {
    closeSync(fd);
  }
  const signature = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  if (!buf.subarray(0, 8).equals(signature) || buf.toString('ascii', 12, 16) !== 'IHDR') return null;
  return { w: buf.readUInt32BE(16), h: buf.readUInt32BE(20) };
}

const problems = [];
const userDataDir = mkdtempSync(join(tmpdir(), 'nequil-chromium-'));
let context;
try {
  // A fresh profile directory per run (Playwright passes it as --user-data-dir).
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
    viewport: { width: 1500, height: 1000 },
    offline: true,
  });
  const page = context.pages()[0] ?? (await context.newPage());
  page.on('console', (msg) => {
    if (msg.type() === 'error') problems.push(`console error: ${msg.text()}`);
  });
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
  page.on('requestfailed', (req) =>
    problems.push(`request failed: ${req.url()} (${req.failure()?.errorText ?? 'unknown'})`),
  );
  await page.route('**/*', (route) => {
    const u = route.request().url();
    if (u.startsWith('file://') || u.startsWith('data:')) return route.continue();
    problems.push(`request to a non-local URL blocked: ${u}`);
    return route.abort();
  });

  await page.goto(url, { waitUntil: 'load', timeout: 60_000 });

  const images = await page.$$eval('img', (imgs) =>
    imgs.map((i) => ({
      src: i.getAttribute('src'),
      url: i.currentSrc || i.src,
      alt: i.alt,
      complete: i.complete,
      w: i.naturalWidth,
      h: i.naturalHeight,
    })),
  );
  let sized = 0;
  for (const img of images) {
    if (!img.complete || img.w === 0) {
      problems.push(`image did not load: ${img.src}`);
      continue;
    }
    if (!img.alt) problems.push(`image without alt text: ${img.src}`);
    // The image must arrive at its natural size: the size written in the PNG file itself.
    if (img.url.startsWith('file:') && /\.png$/i.test(new URL(img.url).pathname)) {
      const file = fileURLToPath(img.url);
      const size = existsSync(file) ? pngSize(file) : null;
      if (!size) {
        problems.push(`image is not a readable PNG file: ${img.src} (${file})`);
      } else if (size.w !== img.w || size.h !== img.h) {
        problems.push(`image loaded at ${img.w}×${img.h}, but ${img.src} is ${size.w}×${size.h}`);
      } else {
        sized += 1;
      }
    }
  }
  // Linked SVG figures must load as images too.
  const svgs = await page.$$eval('a[href$=".svg"]', (as) => [...new Set(as.map((a) => a.getAttribute('href')))]);
  for (const href of svgs) {
    const width = await page.evaluate(
      (src) =>
        new Promise((done) => {
          const im = new Image();
          im.onload = () => done(im.naturalWidth);
          im.onerror = () => done(0);
          im.src = src;
        }),
      href,
    );
    if (!width) problems.push(`linked SVG did not load: ${href}`);
  }
  const info = await page.evaluate(() => ({
    title: document.title,
    sections: document.querySelectorAll('section').length,
    height: document.documentElement.scrollHeight,
  }));
  await page.screenshot({ path: shot, fullPage: true });
  console.log(
    `browser-check: "${info.title}": ${info.sections} sections, ${images.length} images ` +
      `(${sized} at their PNG files' size), ` +
      `${svgs.length} linked SVGs, page ${info.height}px tall; screenshot ${shot}`,
  );
} catch (err) {
  problems.push(`could not check the page: ${err.message}`);
} finally {
  if (context) await context.close().catch(() => {});
  rmSync(userDataDir, { recursive: true, force: true });
}

if (problems.length) {
  console.error(`browser-check: FAILED, ${problems.length} problem(s) in ${report}:`);
  for (const p of problems) console.error(`  - ${p}`);
  process.exit(1);
}
console.log('browser-check: OK (no console errors, no page errors, every image loaded at its natural size)');

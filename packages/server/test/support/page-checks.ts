/**
 * Checks of a web page beyond "it loaded": an accessibility audit with axe-core (injected from node_modules, no
 * download) and screenshots at a desktop and a phone size, saved under `test-output/screenshots/` at the
 * repository root (GLASSCAST_TEST_OUTPUT overrides the folder).
 */
import { mkdirSync } from 'node:fs';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Page } from 'playwright-core';

/** Where the e2e run writes what it saves. */
export const TEST_OUTPUT = process.env['GLASSCAST_TEST_OUTPUT'] ?? fileURLToPath(new URL('../../../../test-output', import.meta.url));

/** Desktop and phone viewports of the acceptance (CSS pixels). */
export const VIEWPORTS = { desktop: { width: 1280, height: 800 }, phone: { width: 390, height: 844 } } as const;

let axeSource: string | undefined;

/** One axe-core violation as reported. */
export interface AxeViolation {
  id: string;
  impact: string | null;
  help: string;
  nodes: { target: string[] }[];
}

/** Runs axe-core on the page as it is; resolves its violations of impact serious or critical. */
export async function seriousA11yViolations(page: Page): Promise<AxeViolation[]> {
  axeSource ??= readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');
  if (!(await page.evaluate('typeof window.axe !== "undefined"'))) await page.addScriptTag({ content: axeSource });
  const violations = (await page.evaluate('window.axe.run(document, { resultTypes: ["violations"] }).then((r) => r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map((n) => ({ target: n.target })) })))')) as AxeViolation[];
  return violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
}

/** Saves a full-page screenshot as `<name>-<viewport>.png`; returns its path. */
export async function screenshot(page: Page, name: string, viewport: keyof typeof VIEWPORTS): Promise<string> {
  const dir = join(TEST_OUTPUT, 'screenshots');
  mkdirSync(dir, { recursive: true });
  const path = join(dir, `${name}-${viewport}.png`);
  await page.screenshot({ path, fullPage: true });
  return path;
}

/**
 * At each viewport: screenshot, no sideways overflow, then the axe audit. Returns the problems found (empty when
 * clean), named by page and viewport for the assertion message.
 */
export async function checkPage(page: Page, name: string): Promise<string[]> {
  const found: string[] = [];
  const original = page.viewportSize();
  for (const viewport of Object.keys(VIEWPORTS) as (keyof typeof VIEWPORTS)[]) {
    await page.setViewportSize(VIEWPORTS[viewport]);
    await page.waitForTimeout(300);
    await screenshot(page, name, viewport);
    // On a phone nothing may stick out sideways (a page that scrolls sideways is broken on touch).
    const width = (await page.evaluate('document.documentElement.scrollWidth')) as number;
    if (width > VIEWPORTS[viewport].width) found.push(`${name} (${viewport}): the page is ${width} px wide, wider than the screen`);
    for (const v of await seriousA11yViolations(page)) found.push(`${name} (${viewport}): ${v.id} [${v.impact}] ${v.help} at ${v.nodes.map((n) => n.target.join(' ')).slice(0, 3).join(', ')}`);
  }
  if (original) await page.setViewportSize(original);
  return found;
}

import fs from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';

// Debian's Chromium driven by playwright-core, with the flags docs/e2e.md lists (no sandbox as root, no GPU, nothing
// that reaches the network). A fresh profile per launch.

export const chromiumPath = ['/usr/lib/chromium/chromium', '/usr/bin/chromium'].find((candidate) => fs.existsSync(candidate));

export async function launchChromium(profileDir, viewport = { width: 1400, height: 900 }) {
	if (!chromiumPath) throw new Error('Chromium is not installed (apt-get install -y chromium)');
	fs.rmSync(profileDir, { recursive: true, force: true });
	fs.mkdirSync(path.dirname(profileDir), { recursive: true });
	return chromium.launchPersistentContext(profileDir, {
		executablePath: chromiumPath,
		headless: true,
		viewport,
		args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
	});
}

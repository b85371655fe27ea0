#!/usr/bin/env node
// Launches the bundled sidecar CLI (dist/sidecar.mjs, built by `npm run build`), so `npx repokv ...` works.
// This file stays CommonJS and dependency-free; the bundle is ESM because node-llama-cpp is.
'use strict';

const path = require('node:path');
const { pathToFileURL } = require('node:url');

const bundle = path.join(__dirname, '..', 'dist', 'sidecar.mjs');

import(pathToFileURL(bundle).href).then(
	async (sidecar) => {
		process.exitCode = await sidecar.main(process.argv.slice(2));
	},
	(error) => {
		if (error && error.code === 'ERR_MODULE_NOT_FOUND' && String(error.message).includes('sidecar.mjs')) {
			console.error(`repokv: ${bundle} is missing; run \`npm run build\` first`);
		} else {
			console.error(error);
		}
		process.exitCode = 1;
	},
);

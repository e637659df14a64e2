#!/usr/bin/env node
// SPDX-License-Identifier: Apache-2.0
//
// A `solc`-compatible command line over solc-js (npm `solc`), for py-solc-x's `solc_binary`:
//   solc-standard-json.js --version          prints the version the way native solc does
//   solc-standard-json.js --standard-json    reads compiler JSON input on stdin, writes JSON output
// Other flags py-solc-x may add (--base-path, --allow-paths, ...) are ignored: every source must be
// passed inline as `content`, there is no import callback.
'use strict';

const solc = require('solc');

const args = process.argv.slice(2);

if (args.includes('--version')) {
  process.stdout.write(
    'solc, the solidity compiler commandline interface\nVersion: ' + solc.version() + '\n',
  );
} else if (args.includes('--standard-json')) {
  const chunks = [];
  process.stdin.on('data', (chunk) => chunks.push(chunk));
  process.stdin.on('end', () => {
    const input = Buffer.concat(chunks).toString('utf8');
    // Do not call process.exit() after a large write: stdout is asynchronous on pipes and the
    // output would be cut; let the event loop drain and exit with exitCode instead.
    process.stdout.write(solc.compile(input));
    process.exitCode = 0;
  });
} else {
  process.stderr.write('usage: solc-standard-json.js --version | --standard-json < input.json\n');
  process.exitCode = 2;
}

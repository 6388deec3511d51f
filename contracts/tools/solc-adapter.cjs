#!/usr/bin/env node
// solc-adapter.cjs — makes the npm `solc` package (solc-js, WebAssembly) look like a
// native solc binary to forge (foundry.toml: solc = "tools/solc", offline = true).
//
// forge calls:  solc --version
//               solc --allow-paths <a,b> --base-path <root> [--include-path <p>]... --standard-json  (input on stdin)
//
// Default mode "lib": load solc-js in this process and call compile() directly
//   (no solcjs CLI, so no ">>> Cannot retry compilation with SMT ..." line and no
//   process.exit() racing a pipe).
// Mode "cli" (SOLC_ADAPTER_MODE=cli): run the solcjs CLI with stdout redirected to a
//   temp file, strip the SMT line, then copy the file to our stdout.
'use strict';
const fs = require('fs');
const os = require('os');
const path = require('path');
const { spawnSync } = require('child_process');

const SMT_LINE = '>>> Cannot retry compilation with SMT because there are no SMT solvers available.';
const solcDir = path.dirname(require.resolve('solc/package.json', { paths: [path.join(__dirname, '..'), process.cwd()] }));

function die(msg) { process.stderr.write('solc-adapter: ' + msg + '\n'); process.exit(1); }

// Write a whole buffer synchronously to fd 1 (handles EAGAIN on non-blocking pipes).
function writeAllSync(buf) {
  let off = 0;
  while (off < buf.length) {
    try { off += fs.writeSync(1, buf, off, buf.length - off); }
    catch (e) { if (e.code !== 'EAGAIN') throw e; Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 5); }
  }
}

const argv = process.argv.slice(2);
if (argv.includes('--version') || argv.includes('-v')) {
  // solc-js reports "0.8.37+commit.f401782d.Emscripten.clang"; forge wants a native-looking line.
  const v = JSON.parse(fs.readFileSync(path.join(solcDir, 'package.json'), 'utf8')).version;
  let full;
  try { full = require(solcDir).version(); } catch (_) { full = v + '+commit.00000000.Emscripten.clang'; }
  const m = /^(\d+\.\d+\.\d+)\+commit\.([0-9a-f]+)/.exec(full) || [null, v, '00000000'];
  process.stdout.write('solc, the solidity compiler commandline interface\nVersion: ' + m[1] + '+commit.' + m[2] + '.Linux.g++\n');
  process.exit(0);
}

let basePath = null; const includePaths = []; let standardJson = false;
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  if (a === '--allow-paths') { i++; continue; }           // solcjs rejects it: drop flag + value
  if (a.startsWith('--allow-paths=')) continue;
  if (a === '--base-path') { basePath = argv[++i]; continue; }
  if (a.startsWith('--base-path=')) { basePath = a.slice(12); continue; }
  if (a === '--include-path') { includePaths.push(argv[++i]); continue; }
  if (a.startsWith('--include-path=')) { includePaths.push(a.slice(15)); continue; }
  if (a === '--standard-json') { standardJson = true; continue; }
  die('unsupported argument: ' + a + ' (argv: ' + argv.join(' ') + ')');
}
if (!standardJson) die('only --standard-json mode is supported');

const input = fs.readFileSync(0); // stdin

if ((process.env.SOLC_ADAPTER_MODE || 'lib') === 'cli') {
  const args = [path.join(solcDir, 'solc.js'), '--standard-json'];
  if (basePath) args.push('--base-path', basePath);
  for (const p of includePaths) args.push('--include-path', p);
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'solc-adapter-'));
  const outFile = path.join(tmp, 'out.json');
  const fd = fs.openSync(outFile, 'w');
  const r = spawnSync(process.execPath, args, { input, stdio: ['pipe', fd, 'inherit'], maxBuffer: 1 << 30 });
  fs.closeSync(fd);
  const text = fs.readFileSync(outFile, 'utf8').split('\n').filter((l) => l.trim() !== SMT_LINE).join('\n');
  fs.rmSync(tmp, { recursive: true, force: true });
  writeAllSync(Buffer.from(text));
  process.exit(r.status === null ? 1 : r.status);
}

// lib mode
const solc = require(solcDir);
const roots = [basePath || process.cwd(), ...includePaths];
function findImports(p) {
  for (const root of (path.isAbsolute(p) ? [''] : roots)) {
    const f = root ? path.join(root, p) : p;
    try { return { contents: fs.readFileSync(f, 'utf8') }; } catch (_) { /* next */ }
  }
  return { error: 'File not found: ' + p };
}
const out = solc.compile(input.toString('utf8'), { import: findImports });
writeAllSync(Buffer.from(out));

// The end-to-end tier: the packaged extension (.vsix, helper inside) in a
// real VS Code — code-server 4.100.3 (VS Code 1.100.3) — driven through
// Debian's Chromium by playwright-core, against the local cluster's staging
// demo. What a user does: turn doppel on in the status bar, pick
// deployment/backend of namespace staging in the quick pick, start the
// "server (doppel e2e)" Node debug session (VS Code's built-in js-debug) of
// test/fixture/server.js, send a request to the cluster (the staging
// frontend, through a port-forward, calls the backend) and see the local
// process answer it. Screenshots go to test-results/.
//
// code-server has no extension test runner: the extension's test-only
// command "doppel (test): Write the test state" (registered only when
// DOPPEL_VSCODE_TEST_RESULTS is set) writes its state to that file, and the
// test reads it.
//
// Needs: test/e2e/setup.sh (code-server, playwright-core, installed in
// ~/.cache/doppel/vscode-e2e or $DOPPEL_VSCODE_E2E_DIR), the .vsix
// (`make vscode`), /usr/bin/chromium, the cluster with the staging images and
// the agent image (`make cluster images image`). KUBECONFIG as the Makefile
// exports it.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const extDir = path.resolve(here, '..', '..');
const repo = path.resolve(extDir, '..', '..');
// setup.sh installs the tools outside the work tree (see there for why)
const tools = process.env.DOPPEL_VSCODE_E2E_DIR || path.join(process.env.DOPPEL_CACHE_DIR || path.join(os.homedir(), '.cache', 'doppel'), 'vscode-e2e');
const require = createRequire(path.join(tools, 'package.json'));
const resultsDir = process.env.DOPPEL_VSCODE_RESULTS_DIR || path.join(extDir, 'test-results');
const vsix = process.env.DOPPEL_VSIX || path.join(extDir, `doppel-${JSON.parse(fs.readFileSync(path.join(extDir, 'package.json'), 'utf8')).version}.vsix`);
const codeServer = path.join(tools, 'node_modules', 'code-server', 'out', 'node', 'entry.js');
const chromium = process.env.DOPPEL_CHROMIUM || '/usr/bin/chromium';
const kubeconfig = process.env.KUBECONFIG || '/var/lib/doppel-cluster/kubeconfig/admin.conf';
const kubectl = process.env.KUBECTL || 'kubectl';
const user = 'vscode-e2e'; // the fixture config steals ?user=vscode-e2e only

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'doppel-vscode-e2e-'));
const ws = path.join(tmp, 'workspace');
const resultsFile = path.join(tmp, 'state.json');
const started = []; // child processes this test started: ended by PID in after()
let browser;
let page;
let csLog = '';

function log(...a) {
  console.log(`[e2e ${new Date().toISOString().slice(11, 23)}]`, ...a);
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function get(url, timeoutMs = 15000) {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode, body }));
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${url}: timed out`)));
    req.on('error', reject);
  });
}

async function waitFor(what, fn, timeoutMs = 30000, everyMs = 250) {
  const end = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${last.message}` : ''}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

function kc(...args) {
  return execFileSync(kubectl, args, { env: { ...process.env, KUBECONFIG: kubeconfig }, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

async function shot(name) {
  fs.mkdirSync(resultsDir, { recursive: true });
  const p = path.join(resultsDir, name);
  await page.screenshot({ path: p });
  log(`screenshot ${p}`);
  return p;
}

/** Runs a command from the command palette (F1), by its title. */
async function runCommand(title) {
  await page.keyboard.press('F1');
  const input = page.locator('.quick-input-widget .quick-input-box input');
  await input.waitFor({ state: 'visible', timeout: 15000 });
  await input.fill(`>${title}`);
  // the row of exactly this command (its aria-label may add the keybinding),
  // not the first fuzzy match ("Debug: Select and Start Debugging")
  const q = JSON.stringify(title);
  const row = page.locator(`.quick-input-widget .quick-input-list .monaco-list-row[aria-label=${q}], .quick-input-widget .quick-input-list .monaco-list-row[aria-label^=${JSON.stringify(title + ',')}]`).first();
  await row.waitFor({ state: 'visible', timeout: 15000 });
  await row.click();
}

/** Picks the quick pick row that has this text, after typing the filter. */
async function pick(text, { filter = text, timeoutMs = 30000 } = {}) {
  const input = page.locator('.quick-input-widget .quick-input-box input');
  await input.waitFor({ state: 'visible', timeout: timeoutMs });
  const row = page.locator('.quick-input-widget .quick-input-list .monaco-list-row', { hasText: text }).first();
  await row.waitFor({ state: 'visible', timeout: timeoutMs }); // the items load from the helper
  await input.fill(filter);
  await row.waitFor({ state: 'visible', timeout: timeoutMs });
  await row.click();
}

async function writeState() {
  fs.rmSync(resultsFile, { force: true });
  await runCommand('doppel (test): Write the test state');
  return waitFor('the test state file', () => (fs.existsSync(resultsFile) ? JSON.parse(fs.readFileSync(resultsFile, 'utf8')) : undefined), 15000);
}

function statusItem(text) {
  return page.locator('.part.statusbar .statusbar-item', { hasText: text }).first();
}

before(async () => {
  for (const [p, fix] of [
    [codeServer, 'test/e2e/setup.sh'],
    [path.join(tools, 'node_modules', 'playwright-core'), 'test/e2e/setup.sh'],
    [vsix, 'make vscode'],
    [chromium, 'make deps (Debian package chromium)'],
    [kubeconfig, 'make cluster'],
  ]) {
    assert.ok(fs.existsSync(p), `${p} is missing: ${fix}`);
  }

  // The staging demo, as the demo and the Go e2e tests deploy it.
  kc('apply', '-f', path.join(repo, 'test', 'apps', 'staging', 'manifests', 'staging.yaml'));
  kc('-n', 'staging', 'rollout', 'status', 'deployment/backend', 'deployment/frontend', '--timeout=180s');

  fs.cpSync(path.join(extDir, 'test', 'fixture'), ws, { recursive: true });
  const userData = path.join(tmp, 'user-data');
  const extensions = path.join(tmp, 'extensions');
  fs.mkdirSync(path.join(userData, 'User'), { recursive: true });
  fs.writeFileSync(
    path.join(userData, 'User', 'settings.json'),
    JSON.stringify(
      {
        'workbench.startupEditor': 'none',
        'workbench.tips.enabled': false,
        'workbench.enableExperiments': false,
        'telemetry.telemetryLevel': 'off',
        'extensions.autoUpdate': false,
        'extensions.autoCheckUpdates': false,
        'extensions.ignoreRecommendations': true,
        'update.mode': 'none',
        'security.workspace.trust.enabled': false,
        'git.enabled': false,
        'debug.internalConsoleOptions': 'openOnSessionStart',
        'window.commandCenter': false,
        'doppel.logLevel': 'debug',
      },
      null,
      2,
    ),
  );
  const config = path.join(tmp, 'code-server.yaml');
  fs.writeFileSync(config, 'auth: none\ncert: false\n');
  const env = {
    ...process.env,
    KUBECONFIG: kubeconfig,
    DOPPEL_VSCODE_TEST_RESULTS: resultsFile,
    XDG_DATA_HOME: path.join(tmp, 'xdg-data'),
    XDG_CONFIG_HOME: path.join(tmp, 'xdg-config'),
  };
  const common = ['--config', config, '--user-data-dir', userData, '--extensions-dir', extensions];
  log(`installing ${vsix}`);
  const out = execFileSync(process.execPath, [codeServer, ...common, '--install-extension', vsix], { env, encoding: 'utf8' });
  assert.match(out, /successfully installed/i, out);

  const port = await freePort();
  const cs = spawn(
    process.execPath,
    [codeServer, ...common, '--auth', 'none', '--bind-addr', `127.0.0.1:${port}`, '--disable-telemetry', '--disable-update-check', '--disable-workspace-trust', '--disable-getting-started-override', '--ignore-last-opened', ws],
    { env, stdio: ['ignore', 'pipe', 'pipe'], detached: true },
  );
  started.push(cs);
  const keep = (c) => {
    csLog += c;
    if (csLog.length > 1_000_000) csLog = csLog.slice(-500_000);
  };
  cs.stdout.setEncoding('utf8').on('data', keep);
  cs.stderr.setEncoding('utf8').on('data', keep);
  const base = `http://127.0.0.1:${port}`;
  await waitFor('code-server', async () => (await get(`${base}/healthz`, 2000)).status === 200, 60000);
  log(`code-server ${base} (pid ${cs.pid})`);

  const { chromium: pw } = require('playwright-core');
  browser = await pw.launch({
    executablePath: chromium,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const context = await browser.newContext({ viewport: { width: 1600, height: 1000 } });
  page = await context.newPage();
  page.on('pageerror', (e) => log(`page error: ${e.message}`));
  await page.goto(`${base}/?folder=${encodeURIComponent(ws)}`);
  await page.locator('.monaco-workbench').waitFor({ state: 'visible', timeout: 60000 });
  log('workbench loaded');
});

after(async () => {
  try {
    if (page && !page.isClosed()) {
      await shot('vscode-e2e-last.png').catch(() => undefined);
      await writeState().catch(() => undefined); // the last state, for the artifacts
    }
    await browser?.close();
  } catch (err) {
    log(`closing the browser: ${err.message}`);
  }
  for (const p of started.reverse()) {
    if (p.exitCode !== null || p.signalCode !== null) continue;
    const gone = new Promise((r) => p.once('exit', r));
    try {
      // each was started detached: its own process group, ended by its PID
      process.kill(-p.pid, 'SIGTERM');
    } catch {
      p.kill('SIGTERM');
    }
    await Promise.race([gone, new Promise((r) => setTimeout(r, 5000))]);
    if (p.exitCode === null && p.signalCode === null) {
      try {
        process.kill(-p.pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
  }
  fs.mkdirSync(resultsDir, { recursive: true });
  fs.writeFileSync(path.join(resultsDir, 'code-server.log'), csLog);
  if (fs.existsSync(resultsFile)) fs.copyFileSync(resultsFile, path.join(resultsDir, 'state.json'));
  if (process.env.DOPPEL_VSCODE_KEEP_TMP !== '1') fs.rmSync(tmp, { recursive: true, force: true });
});

test('a breakpoint-ready Node debug session of a local server gets the staging backend\'s traffic', async () => {
  // 1. doppel is off, and turned on from the status bar.
  const off = statusItem('doppel: off');
  await off.waitFor({ state: 'visible', timeout: 60000 });
  log('the extension is active');
  await off.click();
  await statusItem('doppel: on').waitFor({ state: 'visible', timeout: 10000 });
  log('doppel is on');

  // 2. the target: deployment/backend of namespace staging, via the namespace step.
  await runCommand('doppel: Select the target');
  await pick('Namespace:', { filter: 'Namespace' });
  await pick('staging');
  await pick('deployment/backend');
  await statusItem('staging/deployment/backend').waitFor({ state: 'visible', timeout: 10000 });
  log('target picked');
  let state = await writeState();
  assert.equal(state.enabled, true);
  assert.deepEqual(state.target, { path: 'deployment/backend', namespace: 'staging' });

  // 3. start debugging the fixture's launch configuration (type node).
  await runCommand('Debug: Start Debugging');
  const marker = path.join(ws, 'hits.log');
  const launched = await waitFor(
    'the debuggee to listen',
    async () => {
      if (fs.existsSync(marker) && /"listening":8080/.test(fs.readFileSync(marker, 'utf8'))) return { ok: true };
      // a failed launch shows the helper's message: fail with it at once
      const toast = page.locator('.notification-toast', { has: page.locator('.codicon-error') }).first();
      if (await toast.count()) return { failed: await toast.innerText() };
      return undefined;
    },
    120000,
  );
  assert.ok(launched.ok, `the launch failed: ${launched.failed}`);
  await statusItem('ready').waitFor({ state: 'visible', timeout: 30000 });
  log('the debuggee listens under doppel');
  state = await writeState();
  const session = state.sessions.find((s) => s.state === 'ready');
  assert.ok(session, `a ready session: ${JSON.stringify(state.sessions)}`);
  assert.equal(session.target.path, 'deployment/backend');
  assert.equal(state.lastResolved.result.launch.type !== undefined, true);
  assert.match(state.lastResolved.result.launch.env.LD_PRELOAD, /libdoppel\.so/);
  assert.ok(state.events.some((e) => e.kind === 'resolveLaunch'), 'the launch went through the provider');

  // 4. a request to the cluster: the staging frontend calls the backend with
  //    ?user=vscode-e2e, which the config steals for the local process.
  const pfPort = await freePort();
  const pf = spawn(kubectl, ['-n', 'staging', 'port-forward', 'service/frontend', `${pfPort}:80`], {
    env: { ...process.env, KUBECONFIG: kubeconfig },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  started.push(pf);
  let pfOut = '';
  pf.stdout.setEncoding('utf8').on('data', (c) => (pfOut += c));
  pf.stderr.setEncoding('utf8').on('data', (c) => (pfOut += c));
  await waitFor('the port-forward to the staging frontend', () => /Forwarding from/.test(pfOut), 30000);
  const front = `http://127.0.0.1:${pfPort}`;
  const mine = await waitFor(
    'the local debuggee to answer through the cluster',
    async () => {
      const r = await get(`${front}/?user=${user}`);
      return r.status === 200 && /Hello from the local VS Code debuggee/.test(r.body) ? r : undefined;
    },
    60000,
    1000,
  );
  log(`GET /?user=${user} through the cluster: ${mine.body.match(/<h1>(.*?)<\/h1>/)?.[1]}`);
  const hits = fs.readFileSync(marker, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  const hit = hits.find((h) => h.url && h.url.includes(`user=${user}`));
  assert.ok(hit, `the local process logged the request: ${JSON.stringify(hits)}`);
  assert.ok(hit.dbHost, "the debuggee has the pod's env (DB_HOST)");
  // everyone else still gets the cluster's backend
  const others = await get(`${front}/?user=bob`);
  assert.match(others.body, /This is a silly demo/);

  // the response, shown in the browser beside the editor's state
  const view = await page.context().newPage();
  await view.setViewportSize({ width: 900, height: 300 });
  await view.goto(`${front}/?user=${user}`);
  await view.screenshot({ path: path.join(resultsDir, 'frontend-through-cluster.png') }).catch(() => undefined);
  await view.close();
  await runCommand('doppel: Show the log');
  await page.waitForTimeout(500);
  await shot('vscode-e2e.png');

  // 5. a breakpoint in the handler, hit by a request through the cluster:
  //    the tracker tells the helper the debuggee is paused, then running;
  //    the request completes after continue. (A Node server idle in its event
  //    loop does not stop on "pause" until JavaScript runs: a breakpoint is
  //    what a user does.)
  const lines = fs.readFileSync(path.join(ws, 'server.js'), 'utf8').split('\n');
  const bpLine = lines.findIndex((l) => l.includes('res.writeHead(')) + 1;
  assert.ok(bpLine > 0);
  await page.keyboard.press('F1');
  const input = page.locator('.quick-input-widget .quick-input-box input');
  await input.fill('server.js');
  await page.locator('.quick-input-widget .quick-input-list .monaco-list-row', { hasText: 'server.js' }).first().click();
  await page.locator('.editor-instance .monaco-editor').first().waitFor({ state: 'visible', timeout: 15000 });
  await runCommand('Go to Line/Column...');
  await input.fill(`:${bpLine}`);
  await page.keyboard.press('Enter');
  await runCommand('Debug: Toggle Breakpoint');
  await page.locator('.codicon-debug-breakpoint').first().waitFor({ state: 'visible', timeout: 10000 });
  // js-debug binds it in the child session asynchronously
  await page.waitForTimeout(2000);
  log(`breakpoint at server.js:${bpLine}`);
  const inFlight = get(`${front}/?user=${user}&at=breakpoint`, 60000);
  await statusItem('paused').waitFor({ state: 'visible', timeout: 20000 });
  log('paused at the breakpoint by a request from the cluster');
  // let the workbench draw the stopped line before the screenshot
  await page.locator('.debug-top-stack-frame-line').first().waitFor({ state: 'attached', timeout: 5000 }).catch(() => undefined);
  await page.waitForTimeout(300);
  await shot('vscode-e2e-breakpoint.png');
  state = await writeState();
  assert.equal(state.sessions.find((q) => q.sessionId === session.sessionId).paused, true);
  await page.locator('.debug-toolbar .codicon-debug-continue').click();
  const done = await inFlight;
  assert.match(done.body, /Hello from the local VS Code debuggee/, 'the stolen request completes after continue');
  await statusItem(': ready').waitFor({ state: 'visible', timeout: 20000 });
  log('continued; the request completed');
  state = await writeState();
  const told = state.events.filter((e) => e.kind === 'debuggeeState').map((e) => e.paused);
  assert.deepEqual(told.slice(0, 2), [true, false]);

  // 6. stop debugging: the session ends with it.
  await runCommand('Debug: Stop');
  await waitFor(
    'the session to end',
    async () => {
      const s = await writeState();
      return s.events.some((e) => e.kind === 'endSession' && e.sessionId === session.sessionId) && s.sessions.find((q) => q.sessionId === session.sessionId)?.state === 'ended';
    },
    30000,
    1000,
  );
  log('the session ended with the debug session');

  // 7. a config with a typo: the schema (jsonValidation) and the helper's
  //    diagnostics both report it in the Problems view.
  const bad = path.join(ws, '.mirrord', 'mirrord.json');
  fs.mkdirSync(path.dirname(bad), { recursive: true });
  fs.writeFileSync(bad, '{\n  "target": {"path": "deployment/backend", "namespace": "staging"},\n  "featur": {}\n}\n');
  // (quick open's file index skips a dot-directory made after it started:
  // open it by path through the simple file dialog)
  await runCommand('File: Open File...');
  await input.waitFor({ state: 'visible', timeout: 10000 });
  // the dialog fills in the workspace folder a moment later: replace it then
  await waitFor('the file dialog', async () => (await input.inputValue()).endsWith('/'), 10000, 100);
  // (it may still rewrite the value as it lists the folder: type until it stays)
  await waitFor(
    'the typed path',
    async () => {
      if ((await input.inputValue()) !== bad) await input.fill(bad);
      await page.waitForTimeout(500);
      return (await input.inputValue()) === bad;
    },
    15000,
    0,
  );
  await page.keyboard.press('Enter');
  await page.locator('.tab', { hasText: 'mirrord.json' }).first().waitFor({ state: 'visible', timeout: 15000 });
  await runCommand('Problems: Focus on Problems View');
  const markers = page.locator('.markers-panel');
  await waitFor('the doppel diagnostic in the Problems view', async () => /featur/.test(await markers.innerText()) && /doppel/.test(await markers.innerText()), 30000, 500);
  await waitFor('the schema diagnostic in the Problems view', async () => /not allowed/i.test(await markers.innerText()), 30000, 500);
  await shot('vscode-e2e-diagnostics.png');
  state = await writeState();
  assert.ok((state.diagnostics[bad] ?? []).some((d) => /featur/.test(d.message) && d.line === 2), JSON.stringify(state.diagnostics));
  log('config diagnostics: doppel and the schema');
});

// The fast tier: the bundled extension (dist/extension.js) in plain Node,
// with a double of the `vscode` module (vscode-double.cjs) and the real
// helper (`doppel ide`, $DOPPEL_HELPER or the repository's bin/doppel).
// The target picker and launch resolution run against the local cluster
// ($KUBECONFIG) and skip, saying why, when it or the staging demo is not
// there; the error paths use a kubeconfig that does not exist.
'use strict';

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { createDouble, createContext, load, TextDocument } = require('./vscode-double.cjs');

const extDir = path.resolve(__dirname, '..', '..');
const repo = path.resolve(extDir, '..', '..');
const fixture = path.join(extDir, 'test', 'fixture');
const helperPath = process.env.DOPPEL_HELPER || path.join(repo, 'bin', 'doppel');
const requireCluster = process.env.DOPPEL_VSCODE_REQUIRE_CLUSTER === '1';
// hack/cluster's kubectl, which the agent-lost case uses.
const kubectl = process.env.DOPPEL_KUBECTL || path.join(os.homedir(), '.cache', 'doppel', 'bin', 'kubectl');

function workspace() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'doppel-vscode-unit-'));
  fs.cpSync(fixture, dir, { recursive: true });
  return dir;
}

async function waitFor(what, fn, timeoutMs = 10000) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Activates a fresh copy of the extension in a fresh workspace. */
function activate(settings = {}) {
  const ws = workspace();
  const h = createDouble({ workspaceFolders: [ws], settings: { 'doppel.helperPath': helperPath, ...settings } });
  const ctx = createContext(extDir);
  const ext = load(extDir, h);
  const api = ext.activate(ctx);
  return {
    ws,
    h,
    ctx,
    ext,
    api,
    async close() {
      await ext.deactivate();
      for (const d of ctx.subscriptions) d.dispose();
      fs.rmSync(ws, { recursive: true, force: true });
    },
  };
}

before(() => {
  assert.ok(fs.existsSync(path.join(extDir, 'dist', 'extension.js')), 'dist/extension.js is missing: node scripts/build.mjs');
  assert.ok(fs.existsSync(helperPath), `the helper ${helperPath} is missing: make doppel (or set DOPPEL_HELPER)`);
});

describe('activation', () => {
  let x;
  before(() => {
    x = activate();
  });
  after(() => x.close());

  it('registers the commands, the debug provider and tracker for every type, and the status bar', async () => {
    for (const c of ['doppel.toggle', 'doppel.enable', 'doppel.disable', 'doppel.selectTarget', 'doppel.showLog', 'doppel.restartHelper']) {
      assert.ok(x.h.commands.has(c), c);
    }
    assert.deepEqual(x.h.debugProviders.map((p) => p.type), ['*']);
    assert.equal(typeof x.h.debugProviders[0].provider.resolveDebugConfigurationWithSubstitutedVariables, 'function');
    assert.deepEqual(x.h.trackerFactories.map((p) => p.type), ['*']);
    const toggle = x.h.statusItem('doppel.toggle');
    assert.match(toggle.text, /doppel: off/);
    assert.equal(toggle.command, 'doppel.toggle');
    assert.ok(toggle.visible);
    // no test-only command unless the e2e tier asks for it
    assert.ok(!x.h.commands.has('doppel.test.writeState'));
  });

  it('starts the helper because the workspace has a .doppel/ config, and logs its stderr', async () => {
    const snap = await waitFor('the helper', () => {
      const s = x.api.snapshot();
      return s.helper.initialize ? s : undefined;
    });
    assert.equal(snap.helper.initialize.serverName, 'doppel');
    assert.equal(snap.helper.initialize.protocolVersion, 1);
    assert.ok(snap.helper.initialize.debugTypes.includes('node'));
    const out = x.h.output();
    await waitFor('the helper log in the output channel', () => out.lines.some((l) => /msg=initialize/.test(l)));
  });

  it('associates the schema with .doppel and .mirrord configs (package.json)', () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(extDir, 'package.json'), 'utf8'));
    const json = pkg.contributes.jsonValidation[0];
    assert.deepEqual(json.fileMatch, ['**/.doppel/*.json', '**/.mirrord/*.json']);
    assert.equal(json.url, './schema/doppel.schema.json');
    assert.deepEqual(pkg.contributes.yamlValidation[0].fileMatch, ['**/.doppel/*.yaml', '**/.doppel/*.yml']);
    const schema = JSON.parse(fs.readFileSync(path.join(extDir, json.url), 'utf8'));
    const committed = JSON.parse(fs.readFileSync(path.join(repo, 'schema', 'doppel.schema.json'), 'utf8'));
    assert.deepEqual(schema, committed, 'schema/ is the repository\'s schema/doppel.schema.json');
  });
});

describe('toggle', () => {
  let x;
  before(() => {
    x = activate();
  });
  after(() => x.close());

  it('turns doppel on and off, remembered per workspace, shown in the status bar', async () => {
    const toggle = x.h.statusItem('doppel.toggle');
    await x.h.vscode.commands.executeCommand('doppel.toggle');
    assert.equal(x.ctx.workspaceState.get('doppel.enabled'), true);
    assert.match(toggle.text, /doppel: on/);
    assert.ok(x.h.statusItem('doppel.target').visible);
    await x.h.vscode.commands.executeCommand('doppel.toggle');
    assert.equal(x.ctx.workspaceState.get('doppel.enabled'), false);
    assert.match(toggle.text, /doppel: off/);
    await x.h.vscode.commands.executeCommand('doppel.enable');
    assert.equal(x.api.snapshot().enabled, true);
    await x.h.vscode.commands.executeCommand('doppel.disable');
    assert.equal(x.api.snapshot().enabled, false);
  });

  it('leaves launches alone while off', async () => {
    const cfg = { type: 'node', request: 'launch', name: 'x', program: '/x.js' };
    const out = await x.h.resolveLaunch(x.ws, cfg);
    assert.equal(out, cfg);
  });
});

describe('errors: a kubeconfig that does not exist', () => {
  let x;
  before(() => {
    x = activate({ 'doppel.kubeconfig': '/nonexistent/kubeconfig' });
  });
  after(() => x.close());

  it('the target picker shows the helper\'s message', async () => {
    x.h.answers.quickPick = async () => undefined;
    const picked = await x.h.vscode.commands.executeCommand('doppel.selectTarget');
    assert.equal(picked, undefined);
    const err = x.h.record.messages.find((m) => m.severity === 'error');
    assert.ok(err, 'an error message');
    assert.match(err.message, /kubeconfig/);
    assert.equal(x.ctx.workspaceState.get('doppel.target'), undefined);
  });

  it('a launch fails with the message and is not started', async () => {
    await x.h.vscode.commands.executeCommand('doppel.enable');
    const before = x.h.record.messages.length;
    const out = await x.h.resolveLaunch(x.ws, { type: 'node', request: 'launch', name: 'x', program: path.join(x.ws, 'server.js') });
    assert.equal(out, undefined);
    const err = x.h.record.messages.slice(before).find((m) => m.severity === 'error');
    assert.ok(err, 'an error message');
    assert.match(err.message, /kubeconfig/);
    assert.equal(x.h.record.progress.length, 1, 'a progress notification while it tried');
  });

  it('an invalid config fails the launch and puts the findings on the file', async () => {
    const cfg = path.join(x.ws, '.doppel', 'config.yaml');
    fs.writeFileSync(cfg, 'target:\n  path: deployment/backend\nfeature:\n  network:\n    incomin:\n      mode: steal\n');
    const before = x.h.record.messages.length;
    const out = await x.h.resolveLaunch(x.ws, { type: 'node', request: 'launch', name: 'x', program: path.join(x.ws, 'server.js') });
    assert.equal(out, undefined);
    const err = x.h.record.messages.slice(before).find((m) => m.severity === 'error');
    assert.ok(err, 'an error message');
    const diags = x.api.snapshot().diagnostics[cfg];
    assert.ok(diags && diags.length >= 1, 'diagnostics on the config file');
    assert.equal(diags[0].line, 4);
  });

  it('debug types doppel does not intercept and js-debug child sessions pass unchanged', async () => {
    const chrome = { type: 'chrome', request: 'launch', name: 'web', url: 'http://localhost' };
    assert.equal(await x.h.resolveLaunch(x.ws, chrome), chrome);
    const child = { type: 'pwa-node', request: 'attach', name: 'child', __pendingTargetId: 'abc' };
    assert.equal(await x.h.resolveLaunch(x.ws, child), child);
    const optOut = { type: 'node', request: 'launch', name: 'x', doppel: false };
    assert.equal(await x.h.resolveLaunch(x.ws, optOut), optOut);
  });
});

describe('config diagnostics', () => {
  let x;
  before(() => {
    x = activate();
  });
  after(() => x.close());

  it('checks an open config document, unsaved text included', async () => {
    const p = path.join(x.ws, '.doppel', 'config.yaml');
    const doc = new TextDocument(p, 'target:\n  path: deployment/backend\nfeature:\n  network:\n    incomin: {}\n', { isDirty: true });
    const diags = await x.api.checkDocument(doc);
    assert.equal(diags.length, 1);
    const d = diags[0];
    assert.match(d.message, /incomin/);
    assert.equal(d.code, 'unknown_key');
    assert.equal(d.source, 'doppel');
    assert.equal(d.severity, x.h.vscode.DiagnosticSeverity.Error);
    assert.deepEqual([d.range.start.line, d.range.start.character, d.range.end.character], [4, 4, 11]);
    // fixed in the editor: the list empties
    doc.setText('target:\n  path: deployment/backend\n');
    assert.deepEqual(await x.api.checkDocument(doc), []);
  });

  it('checks documents as they open, and ignores other files', async () => {
    const p = path.join(x.ws, '.mirrord', 'mirrord.json');
    fs.mkdirSync(path.dirname(p), { recursive: true });
    x.h.openDocument(new TextDocument(p, '{"feature": {"network": {"incoming": {"mode": "sideways"}}}}'));
    x.h.openDocument(new TextDocument(path.join(x.ws, 'server.js'), 'not a config'));
    const diags = await waitFor('diagnostics of the opened .mirrord/mirrord.json', () => x.api.snapshot().diagnostics[p]);
    assert.equal(diags.length, 1);
    assert.match(diags[0].message, /sideways|mode/);
    assert.equal(x.api.snapshot().diagnostics[path.join(x.ws, 'server.js')], undefined);
  });

  it('shows what the helper pushes when a config file changes on disk', async () => {
    await waitFor('the helper', () => x.api.snapshot().helper.initialize);
    const p = path.join(x.ws, '.doppel', 'other.json');
    fs.writeFileSync(p, '{"target": {"path": "deployment/backend"}, "featur": {}}\n');
    const diags = await waitFor('doppel/configDiagnostics for other.json', () => {
      const d = x.api.snapshot().diagnostics[p];
      return d && d.length ? d : undefined;
    });
    assert.match(diags[0].message, /featur/);
    fs.writeFileSync(p, '{"target": {"path": "deployment/backend"}}\n');
    await waitFor('the findings to clear', () => x.api.snapshot().diagnostics[p]?.length === 0);
  });
});

describe('against the local cluster (staging demo)', () => {
  let x;
  let skip;
  before(async () => {
    x = activate();
    try {
      const r = await x.api.request('doppel/listTargets', { namespace: 'staging' });
      if (!r.targets.some((t) => t.path === 'deployment/backend' && t.ready)) {
        skip = 'deployment/backend of namespace staging is not there or not ready: kubectl apply -f test/apps/staging/manifests/staging.yaml';
      }
    } catch (err) {
      skip = `no cluster: ${err.message}`;
    }
    if (skip && requireCluster) throw new Error(skip);
  });
  after(() => x.close());

  it('picks deployment/backend of namespace staging, through the namespace step', async (t) => {
    if (skip) return t.skip(skip);
    x.ctx.workspaceState.update('doppel.namespace', 'default');
    const seen = [];
    x.h.answers.quickPick = async (items, options) => {
      seen.push({ items, options });
      if (options.title === 'doppel: namespace') return items.find((i) => i === 'staging');
      const ns = items.find((i) => i.changeNamespace);
      if (ns && /Namespace: default/.test(ns.label)) return ns;
      return items.find((i) => i.label === 'deployment/backend');
    };
    const picked = await x.h.vscode.commands.executeCommand('doppel.selectTarget');
    assert.deepEqual(picked, { path: 'deployment/backend', namespace: 'staging' });
    assert.deepEqual(x.ctx.workspaceState.get('doppel.target'), { path: 'deployment/backend', namespace: 'staging' });
    assert.equal(seen.length, 3, 'targets of default, namespaces, targets of staging');
    assert.ok(seen[1].items.includes('staging'));
    const items = seen[2].items;
    assert.ok(items.some((i) => /No target/.test(i.label) && i.choice.path === 'targetless'));
    assert.ok(items.some((i) => i.kind === x.h.vscode.QuickPickItemKind.Separator && i.label === 'Deployments'));
    const backend = items.find((i) => i.label === 'deployment/backend');
    assert.match(backend.description, /staging/);
    assert.match(backend.detail, /containers: backend/);
    assert.match(x.h.statusItem('doppel.target').text, /staging\/deployment\/backend/);
  });

  it('resolves a node launch: env injected, progress shown, paused/continued told, session ended with the debug session', async (t) => {
    if (skip) return t.skip(skip);
    await x.ctx.workspaceState.update('doppel.target', { path: 'deployment/backend', namespace: 'staging' });
    await x.h.vscode.commands.executeCommand('doppel.enable');
    const launch = { type: 'node', request: 'launch', name: 'server', program: path.join(x.ws, 'server.js'), env: { PORT: '18080', MINE: 'kept' } };
    const out = await x.h.resolveLaunch(x.ws, launch);
    assert.ok(out, `a launch: ${JSON.stringify(x.h.record.messages.filter((m) => m.severity === 'error'))}`);
    const sid = out.__doppelSessionId;
    assert.ok(sid, 'the session id rides on the launch');
    assert.equal(out.program, launch.program);
    assert.equal(out.env.MINE, 'kept');
    assert.equal(out.env.PORT, '18080', "the launch's own env wins");
    assert.match(out.env.LD_PRELOAD, /libdoppel\.so/);
    assert.ok(out.env.DOPPEL_LAYER_SOCKET);
    assert.ok(out.env.DB_HOST, "the target's env (DB_HOST of the backend)");
    const prog = x.h.record.progress.at(-1);
    assert.equal(prog.options.location, x.h.vscode.ProgressLocation.Notification);
    assert.ok(prog.reports.length >= 1);
    const snap = x.api.snapshot();
    const s = snap.sessions.find((s) => s.sessionId === sid);
    assert.equal(s.state, 'ready');
    assert.equal(s.target.path, 'deployment/backend');
    assert.match(x.h.statusItem('doppel.target').text, /ready/);
    assert.ok(snap.events.some((e) => e.kind === 'sessionState' && e.sessionId === sid && e.state === 'ready'));

    // a relaunch (restart) of the resolved launch reuses its live session
    const again = await x.h.resolveLaunch(x.ws, out);
    assert.equal(again.__doppelSessionId, sid, 'a relaunch reuses the live session');
    assert.equal(again.env.DOPPEL_LAYER_SOCKET, out.env.DOPPEL_LAYER_SOCKET);
    assert.equal(again.env.LD_PRELOAD, out.env.LD_PRELOAD, 'not preloaded twice');

    // js-debug: the parent session carries the id; the child reports stops
    const parent = x.h.startDebugSession(out);
    const child = x.h.startDebugSession({ type: 'pwa-node', request: 'attach', name: 'server [1234]', __pendingTargetId: 't1' }, parent);
    x.h.adapterSends(child, { type: 'event', event: 'stopped', body: { reason: 'breakpoint' } });
    await waitFor('paused in the helper', async () => {
      const r = await x.api.request('doppel/listSessions');
      return r.sessions.find((q) => q.sessionId === sid)?.paused === true;
    });
    assert.match(x.h.statusItem('doppel.target').text, /paused/);
    x.h.adapterSends(child, { type: 'response', command: 'continue', success: true });
    await waitFor('running in the helper', async () => {
      const r = await x.api.request('doppel/listSessions');
      return r.sessions.find((q) => q.sessionId === sid)?.paused === false;
    });
    x.h.adapterSends(child, { type: 'event', event: 'stopped', body: { reason: 'pause' } });
    x.h.adapterSends(child, { type: 'event', event: 'continued', body: {} });
    const states = x.api.snapshot().events.filter((e) => e.kind === 'debuggeeState').map((e) => e.paused);
    assert.deepEqual(states, [true, false, true, false]);

    x.h.endDebugSession(child);
    assert.equal(x.api.snapshot().sessions.find((q) => q.sessionId === sid).state, 'ready', 'a child ending keeps the session');
    x.h.endDebugSession(parent);
    await waitFor('the session to end', async () => {
      const r = await x.api.request('doppel/listSessions');
      return !r.sessions.some((q) => q.sessionId === sid && q.state !== 'ended');
    });
    assert.ok(x.api.snapshot().events.some((e) => e.kind === 'endSession' && e.sessionId === sid));
  });

  it('a session whose agent was lost is still ended with its debug session, which releases it in the helper', async (t) => {
    if (skip) return t.skip(skip);
    await x.ctx.workspaceState.update('doppel.target', { path: 'deployment/backend', namespace: 'staging' });
    await x.h.vscode.commands.executeCommand('doppel.enable');
    const out = await x.h.resolveLaunch(x.ws, { type: 'node', request: 'launch', name: 'server', program: path.join(x.ws, 'server.js') });
    assert.ok(out, `a launch: ${JSON.stringify(x.h.record.messages.filter((m) => m.severity === 'error'))}`);
    const sid = out.__doppelSessionId;
    const parent = x.h.startDebugSession(out);
    // The agent pods of staging are this test's: the earlier sessions ended.
    execFileSync(kubectl, ['-n', 'staging', 'delete', 'pod', '-l', 'app.kubernetes.io/name=doppel-agent', '--grace-period=0', '--force', '--wait=false'],
      { stdio: 'pipe' });
    await waitFor('the session to end by itself', () => x.api.snapshot().sessions.find((q) => q.sessionId === sid)?.state === 'ended', 90000);
    const listed = await x.api.request('doppel/listSessions');
    assert.equal(listed.sessions.find((q) => q.sessionId === sid)?.state, 'ended', 'the helper keeps it until the IDE ends it');
    x.h.endDebugSession(parent);
    await waitFor('the helper to release it', async () => {
      const r = await x.api.request('doppel/listSessions');
      return !r.sessions.some((q) => q.sessionId === sid);
    });
    assert.ok(x.api.snapshot().events.some((e) => e.kind === 'endSession' && e.sessionId === sid));
  });
});

describe('deactivate', () => {
  it('shuts the helper down', async () => {
    const x = activate();
    const snap = await waitFor('the helper', () => {
      const s = x.api.snapshot();
      return s.helper.pid && s.helper.initialize ? s : undefined;
    });
    const pid = snap.helper.pid;
    await x.close();
    await waitFor('the helper process to exit', () => {
      try {
        process.kill(pid, 0);
        return false;
      } catch {
        return true;
      }
    });
    assert.ok(x.h.output().lines.some((l) => /exited/.test(l)));
  });
});

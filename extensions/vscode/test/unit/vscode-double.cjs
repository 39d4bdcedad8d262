// A small double of the `vscode` module: only what the extension uses, with
// hooks for the tests to script the user's answers (quick picks, message
// buttons) and to fire editor and debug events. load() puts it in place of
// `vscode` and loads the bundled extension (dist/extension.js).
'use strict';

const Module = require('node:module');
const path = require('node:path');

class Disposable {
  constructor(fn) {
    this._fn = fn;
  }
  dispose() {
    if (this._fn) this._fn();
    this._fn = undefined;
  }
  static from(...ds) {
    return new Disposable(() => ds.forEach((d) => d.dispose()));
  }
}

class EventEmitter {
  constructor() {
    this.listeners = new Set();
    this.event = (listener) => {
      this.listeners.add(listener);
      return new Disposable(() => this.listeners.delete(listener));
    };
  }
  fire(e) {
    for (const l of [...this.listeners]) l(e);
  }
  dispose() {
    this.listeners.clear();
  }
}

class CancellationTokenSource {
  constructor() {
    const em = new EventEmitter();
    this._em = em;
    this.token = {
      isCancellationRequested: false,
      onCancellationRequested: em.event,
    };
  }
  cancel() {
    if (this.token.isCancellationRequested) return;
    this.token.isCancellationRequested = true;
    this._em.fire();
  }
  dispose() {
    this._em.dispose();
  }
}

class Uri {
  constructor(scheme, fsPath) {
    this.scheme = scheme;
    this.fsPath = fsPath;
    this.path = fsPath;
  }
  static file(p) {
    return new Uri('file', path.resolve(p));
  }
  toString() {
    return `${this.scheme}://${this.fsPath}`;
  }
}

class Position {
  constructor(line, character) {
    this.line = line;
    this.character = character;
  }
}

class Range {
  constructor(sl, sc, el, ec) {
    this.start = new Position(sl, sc);
    this.end = new Position(el, ec);
  }
}

const DiagnosticSeverity = { Error: 0, Warning: 1, Information: 2, Hint: 3 };

class Diagnostic {
  constructor(range, message, severity = DiagnosticSeverity.Error) {
    this.range = range;
    this.message = message;
    this.severity = severity;
  }
}

class ThemeColor {
  constructor(id) {
    this.id = id;
  }
}

class DiagnosticCollection {
  constructor(name) {
    this.name = name;
    this.map = new Map();
  }
  set(uri, diags) {
    this.map.set(uri.toString(), { uri, diags: diags ?? [] });
  }
  get(uri) {
    return this.map.get(uri.toString())?.diags;
  }
  delete(uri) {
    this.map.delete(uri.toString());
  }
  clear() {
    this.map.clear();
  }
  forEach(fn) {
    for (const { uri, diags } of this.map.values()) fn(uri, diags, this);
  }
  dispose() {
    this.map.clear();
  }
}

class Memento {
  constructor() {
    this.data = new Map();
  }
  get(key, def) {
    return this.data.has(key) ? this.data.get(key) : def;
  }
  async update(key, value) {
    if (value === undefined) this.data.delete(key);
    else this.data.set(key, JSON.parse(JSON.stringify(value)));
  }
  keys() {
    return [...this.data.keys()];
  }
}

/** A text document: uri, text, version, dirty flag. */
class TextDocument {
  constructor(fsPath, text, { isDirty = false } = {}) {
    this.uri = Uri.file(fsPath);
    this.fileName = this.uri.fsPath;
    this.text = text;
    this.version = 1;
    this.isDirty = isDirty;
  }
  getText() {
    return this.text;
  }
  setText(t) {
    this.text = t;
    this.version++;
    this.isDirty = true;
  }
  get lineCount() {
    return this.text.split('\n').length;
  }
  lineAt(i) {
    return { text: this.text.split('\n')[i] ?? '' };
  }
}

/**
 * Creates a fresh double. `opts.workspaceFolders`: paths; `opts.settings`:
 * the doppel.* settings.
 */
function createDouble(opts = {}) {
  const record = { messages: [], quickPicks: [], progress: [], statusBarItems: [], outputs: [], executed: [] };
  const events = {
    openDoc: new EventEmitter(),
    changeDoc: new EventEmitter(),
    saveDoc: new EventEmitter(),
    closeDoc: new EventEmitter(),
    config: new EventEmitter(),
    startDebug: new EventEmitter(),
    terminateDebug: new EventEmitter(),
  };
  const commands = new Map();
  const debugProviders = [];
  const trackerFactories = [];
  const settings = { ...(opts.settings ?? {}) };
  const contextKeys = {};
  // Scripted answers: functions the tests set.
  const answers = {
    quickPick: async () => undefined,
    message: async () => undefined,
  };

  const vscode = {
    version: '1.100.3',
    Disposable,
    EventEmitter,
    CancellationTokenSource,
    Uri,
    Position,
    Range,
    Diagnostic,
    DiagnosticSeverity,
    ThemeColor,
    StatusBarAlignment: { Left: 1, Right: 2 },
    ProgressLocation: { SourceControl: 1, Window: 10, Notification: 15 },
    QuickPickItemKind: { Separator: -1, Default: 0 },
    window: {
      createOutputChannel(name) {
        const ch = {
          name,
          lines: [],
          shown: 0,
          append(s) {
            ch.lines.push(s);
          },
          appendLine(s) {
            ch.lines.push(s);
          },
          show() {
            ch.shown++;
          },
          hide() {},
          clear() {
            ch.lines.length = 0;
          },
          dispose() {},
        };
        record.outputs.push(ch);
        return ch;
      },
      createStatusBarItem(id, alignment, priority) {
        const item = { id, alignment, priority, text: '', tooltip: '', command: undefined, visible: false, show() { item.visible = true; }, hide() { item.visible = false; }, dispose() {} };
        record.statusBarItems.push(item);
        return item;
      },
      async showQuickPick(items, options) {
        const resolved = await items;
        const entry = { items: resolved, options };
        record.quickPicks.push(entry);
        return answers.quickPick(resolved, options);
      },
      showInformationMessage(message, ...items) {
        record.messages.push({ severity: 'info', message, items });
        return answers.message('info', message, items);
      },
      showWarningMessage(message, ...items) {
        record.messages.push({ severity: 'warning', message, items });
        return answers.message('warning', message, items);
      },
      showErrorMessage(message, ...items) {
        record.messages.push({ severity: 'error', message, items });
        return answers.message('error', message, items);
      },
      async withProgress(options, task) {
        const entry = { options, reports: [] };
        record.progress.push(entry);
        const cts = new CancellationTokenSource();
        entry.cancel = () => cts.cancel();
        return task({ report: (r) => entry.reports.push(r) }, cts.token);
      },
    },
    commands: {
      registerCommand(id, fn) {
        if (commands.has(id)) throw new Error(`command ${id} already registered`);
        commands.set(id, fn);
        return new Disposable(() => commands.delete(id));
      },
      async executeCommand(id, ...args) {
        record.executed.push(id);
        if (id === 'setContext') {
          contextKeys[args[0]] = args[1];
          return undefined;
        }
        const fn = commands.get(id);
        if (!fn) throw new Error(`command ${id} not found`);
        return fn(...args);
      },
      async getCommands() {
        return [...commands.keys()];
      },
    },
    workspace: {
      workspaceFolders: (opts.workspaceFolders ?? []).map((p, index) => ({ uri: Uri.file(p), name: path.basename(p), index })),
      textDocuments: [],
      getConfiguration(section) {
        return {
          get(key, def) {
            const k = section ? `${section}.${key}` : key;
            return k in settings ? settings[k] : def;
          },
          has(key) {
            return (section ? `${section}.${key}` : key) in settings;
          },
          async update(key, value) {
            settings[section ? `${section}.${key}` : key] = value;
          },
        };
      },
      onDidOpenTextDocument: events.openDoc.event,
      onDidChangeTextDocument: events.changeDoc.event,
      onDidSaveTextDocument: events.saveDoc.event,
      onDidCloseTextDocument: events.closeDoc.event,
      onDidChangeConfiguration: events.config.event,
    },
    languages: {
      createDiagnosticCollection(name) {
        const dc = new DiagnosticCollection(name);
        record.diagnostics = dc;
        return dc;
      },
    },
    debug: {
      registerDebugConfigurationProvider(type, provider) {
        debugProviders.push({ type, provider });
        return new Disposable(() => debugProviders.splice(debugProviders.findIndex((p) => p.provider === provider), 1));
      },
      registerDebugAdapterTrackerFactory(type, factory) {
        trackerFactories.push({ type, factory });
        return new Disposable(() => trackerFactories.splice(trackerFactories.findIndex((p) => p.factory === factory), 1));
      },
      onDidStartDebugSession: events.startDebug.event,
      onDidTerminateDebugSession: events.terminateDebug.event,
    },
    env: { appName: 'Visual Studio Code (double)' },
  };

  // Test-side helpers.
  const harness = {
    vscode,
    record,
    events,
    commands,
    debugProviders,
    trackerFactories,
    settings,
    contextKeys,
    answers,
    TextDocument,
    statusItem(id) {
      return record.statusBarItems.find((i) => i.id === id);
    },
    output() {
      return record.outputs.find((o) => o.name === 'doppel');
    },
    /** What VS Code does with a launch: every '*' and type provider's resolve…WithSubstitutedVariables, in order. */
    async resolveLaunch(folderPath, config, token) {
      const folder = folderPath ? vscode.workspace.workspaceFolders.find((f) => f.uri.fsPath === path.resolve(folderPath)) : undefined;
      let c = config;
      for (const { type, provider } of debugProviders) {
        if (type !== '*' && type !== c.type) continue;
        if (!provider.resolveDebugConfigurationWithSubstitutedVariables) continue;
        c = await provider.resolveDebugConfigurationWithSubstitutedVariables(folder, c, token);
        if (c === undefined || c === null) return c;
      }
      return c;
    },
    /** Starts a debug session: trackers are created, onDidStartDebugSession fires. */
    startDebugSession(configuration, parentSession) {
      const ds = { id: `ds-${Math.random().toString(36).slice(2)}`, type: configuration.type, name: configuration.name, configuration, parentSession };
      ds.trackers = trackerFactories
        .filter((f) => f.type === '*' || f.type === ds.type)
        .map((f) => f.factory.createDebugAdapterTracker(ds))
        .filter(Boolean);
      events.startDebug.fire(ds);
      return ds;
    },
    /** A message from the debug adapter to VS Code. */
    adapterSends(ds, message) {
      for (const t of ds.trackers) t.onDidSendMessage?.(message);
    },
    endDebugSession(ds) {
      for (const t of ds.trackers) t.onWillStopSession?.();
      events.terminateDebug.fire(ds);
    },
    openDocument(doc) {
      vscode.workspace.textDocuments.push(doc);
      events.openDoc.fire(doc);
    },
  };
  return harness;
}

function createContext(extensionPath) {
  return {
    subscriptions: [],
    workspaceState: new Memento(),
    globalState: new Memento(),
    extensionPath,
    extensionUri: Uri.file(extensionPath),
    asAbsolutePath: (p) => path.join(extensionPath, p),
    extensionMode: 3,
  };
}

/**
 * Loads the bundled extension with this double as `vscode`: a fresh copy of
 * dist/extension.js each time, so that every test gets its own module state.
 */
function load(extensionDir, harness) {
  const bundle = path.join(extensionDir, 'dist', 'extension.js');
  delete require.cache[require.resolve(bundle)];
  const origLoad = Module._load;
  Module._load = function (request, parent, isMain) {
    if (request === 'vscode') return harness.vscode;
    return origLoad.call(this, request, parent, isMain);
  };
  try {
    return require(bundle);
  } finally {
    Module._load = origLoad;
  }
}

module.exports = { createDouble, createContext, load, TextDocument, Uri };

// The doppel VS Code extension: a thin client of `doppel ide`
// (docs/ide-protocol.md). All logic about sessions, targets and launches is
// the helper's; this file is UI and launch plumbing.

import * as fs from 'node:fs';
import * as path from 'node:path';
import * as vscode from 'vscode';
import { findHelper, Helper, HelperError, ClientErrorCodes } from './helper';
import {
  CheckConfigResult,
  ConfigDiagnosticsParams,
  ErrorCodes,
  InitializeParams,
  Launch,
  ListTargetsParams,
  ListTargetsResult,
  Methods,
  NoticeParams,
  Notifications,
  ProgressParams,
  ResolveLaunchParams,
  ResolveLaunchResult,
  SessionStateName,
  SessionStateParams,
  TargetInfo,
  TargetRef,
} from './protocol';
import { isConfigDocument, toVsDiagnostics } from './diagnostics';

/** The key a resolved launch carries its doppel session in. */
export const SessionKey = '__doppelSessionId';

const EnabledKey = 'doppel.enabled';
const TargetKey = 'doppel.target';
const NamespaceKey = 'doppel.namespace';

/** The picker's choice, remembered per workspace. */
export interface TargetChoice {
  /** "deployment/backend", or "targetless". */
  path: string;
  namespace?: string;
}

interface SessionView {
  sessionId: string;
  state: SessionStateName;
  target?: TargetRef;
  paused: boolean;
  reason?: string;
  debugSessions: Set<string>;
  endedByUs: boolean;
  /** The launch before doppel changed it, for a relaunch that reuses the session. */
  launch?: Launch;
}

interface Event {
  at: number;
  kind: string;
  [k: string]: unknown;
}

/** Kinds in the order the picker shows them. */
const kindOrder = ['deployment', 'rollout', 'statefulset', 'daemonset', 'job', 'cronjob', 'replicaset', 'pod'];

/** Requests of a debug adapter after which the debuggee runs again. */
const resumingRequests = new Set(['continue', 'next', 'stepIn', 'stepOut', 'stepBack', 'reverseContinue', 'goto']);

class Doppel implements vscode.Disposable {
  readonly output: vscode.OutputChannel;
  readonly diagnostics: vscode.DiagnosticCollection;
  private readonly toggleItem: vscode.StatusBarItem;
  private readonly sessionItem: vscode.StatusBarItem;
  private helper: Helper | undefined;
  private helperProblem: string | undefined;
  private readonly sessions = new Map<string, SessionView>();
  private readonly progressListeners = new Set<(p: ProgressParams) => void>();
  private readonly disposables: vscode.Disposable[] = [];
  private readonly pendingChecks = new Map<string, NodeJS.Timeout>();
  readonly events: Event[] = [];
  private lastResolved: { launch: Launch; result: ResolveLaunchResult } | undefined;

  constructor(private readonly ctx: vscode.ExtensionContext) {
    this.output = vscode.window.createOutputChannel('doppel');
    this.diagnostics = vscode.languages.createDiagnosticCollection('doppel');
    this.toggleItem = vscode.window.createStatusBarItem('doppel.toggle', vscode.StatusBarAlignment.Left, 100);
    this.toggleItem.name = 'doppel: on/off';
    this.toggleItem.command = 'doppel.toggle';
    this.sessionItem = vscode.window.createStatusBarItem('doppel.target', vscode.StatusBarAlignment.Left, 99);
    this.sessionItem.name = 'doppel: target and session';
    this.sessionItem.command = 'doppel.selectTarget';
    this.disposables.push(this.output, this.diagnostics, this.toggleItem, this.sessionItem);
  }

  // ---- state ---------------------------------------------------------------

  get enabled(): boolean {
    return this.ctx.workspaceState.get<boolean>(EnabledKey, false);
  }

  get target(): TargetChoice | undefined {
    return this.ctx.workspaceState.get<TargetChoice>(TargetKey);
  }

  async setEnabled(on: boolean): Promise<void> {
    await this.ctx.workspaceState.update(EnabledKey, on);
    this.record('toggle', { enabled: on });
    this.log(`doppel is ${on ? 'on' : 'off'} for debug launches`);
    this.render();
    if (on) void this.ensureHelper().catch(() => undefined);
  }

  async setTarget(t: TargetChoice | undefined): Promise<void> {
    await this.ctx.workspaceState.update(TargetKey, t);
    if (t?.namespace) await this.ctx.workspaceState.update(NamespaceKey, t.namespace);
    this.record('target', { target: t ?? null });
    this.log(`target: ${t ? describeTarget(t) : "the config file's"}`);
    this.render();
  }

  // ---- helper --------------------------------------------------------------

  private settings() {
    return vscode.workspace.getConfiguration('doppel');
  }

  private initParams(): InitializeParams {
    return {
      clientName: 'vscode',
      clientVersion: vscode.version,
      workspaceFolders: (vscode.workspace.workspaceFolders ?? []).filter((f) => f.uri.scheme === 'file').map((f) => f.uri.fsPath),
    };
  }

  private getHelper(): Helper {
    if (this.helper) return this.helper;
    const s = this.settings();
    const command = findHelper(s.get<string>('helperPath'), this.ctx.extensionPath);
    if (!command) {
      this.helperProblem = 'doppel was not found: it is not in the extension, doppel.helperPath is empty and there is no doppel on PATH.';
      throw new HelperError(this.helperProblem, ClientErrorCodes.notFound);
    }
    const args = ['ide', '--log-level', s.get<string>('logLevel') || 'info'];
    const kubeconfig = s.get<string>('kubeconfig');
    const context = s.get<string>('context');
    if (kubeconfig) args.push('--kubeconfig', kubeconfig);
    if (context) args.push('--context', context);
    const folder = vscode.workspace.workspaceFolders?.find((f) => f.uri.scheme === 'file');
    const helper = new Helper({
      command,
      args,
      cwd: folder?.uri.fsPath,
      log: (l) => this.output.appendLine(l),
      onNotification: (m, p) => this.onNotification(m, p),
      onExit: (code, signal, expected) => {
        if (this.helper === helper) this.helper = undefined;
        for (const s of this.sessions.values()) {
          if (s.state !== 'ended') {
            s.state = 'ended';
            s.reason = 'the doppel helper exited';
          }
        }
        this.record('helperExit', { code, signal, expected });
        if (!expected) {
          this.helperProblem = `the doppel helper exited (${signal ?? `code ${code}`})`;
          void this.showError(`The doppel helper exited unexpectedly (${signal ?? `code ${code}`}); it restarts with the next launch.`, true);
        }
        this.render();
      },
    });
    this.helper = helper;
    return helper;
  }

  async ensureHelper(): Promise<void> {
    try {
      await this.getHelper().start(this.initParams());
      this.helperProblem = undefined;
    } catch (err) {
      this.helperProblem = (err as Error).message;
      this.log(`the helper could not start: ${this.helperProblem}`);
      this.render();
      throw err;
    }
    this.render();
  }

  private async request<T>(method: string, params?: unknown, token?: vscode.CancellationToken): Promise<T> {
    const helper = this.getHelper();
    try {
      const r = await helper.request<T>(this.initParams(), method, params, token as any);
      this.helperProblem = undefined;
      return r;
    } catch (err) {
      if (err instanceof HelperError && (err.code === ClientErrorCodes.notFound || err.code === ClientErrorCodes.exited)) {
        this.helperProblem = err.message;
        this.render();
      }
      throw err;
    }
  }

  helperRequest<T>(method: string, params?: unknown): Promise<T> {
    return this.request<T>(method, params);
  }

  async stopHelper(): Promise<void> {
    const h = this.helper;
    this.helper = undefined;
    await h?.stop();
  }

  // ---- notifications -------------------------------------------------------

  private onNotification(method: string, params: any): void {
    switch (method) {
      case Notifications.progress: {
        const p = params as ProgressParams;
        this.record('progress', { sessionId: p.sessionId, step: p.step, elapsedMs: p.elapsedMs });
        for (const l of this.progressListeners) l(p);
        break;
      }
      case Notifications.sessionState: {
        const p = params as SessionStateParams;
        this.record('sessionState', { sessionId: p.sessionId, state: p.state, reason: p.reason, category: p.category });
        const s = this.session(p.sessionId);
        s.state = p.state;
        s.reason = p.reason;
        if (p.state === 'ended' && !s.endedByUs && p.reason) {
          const msg = `doppel session ended: ${p.reason}`;
          if (p.category === 'internal') void this.showError(msg, true);
          else void vscode.window.showWarningMessage(msg);
        } else if (p.state === 'reconnecting') {
          this.log(`session ${p.sessionId}: reconnecting${p.reason ? `: ${p.reason}` : ''}`);
        }
        this.render();
        break;
      }
      case Notifications.notice: {
        const p = params as NoticeParams;
        this.record('notice', { sessionId: p.sessionId, severity: p.severity, message: p.message });
        const msg = `doppel: ${p.message}`;
        if (p.severity === 'error') void this.showError(msg, false);
        else if (p.severity === 'warning') void vscode.window.showWarningMessage(msg);
        else void vscode.window.showInformationMessage(msg);
        break;
      }
      case Notifications.configDiagnostics: {
        const p = params as ConfigDiagnosticsParams;
        this.record('configDiagnostics', { path: p.path, count: p.diagnostics.length });
        const uri = vscode.Uri.file(p.path);
        const doc = vscode.workspace.textDocuments.find((d) => d.uri.fsPath === uri.fsPath);
        // An unsaved editor is checked from its text; the disk's findings would be stale.
        if (doc?.isDirty) break;
        this.diagnostics.set(uri, toVsDiagnostics(p.diagnostics, doc));
        break;
      }
      default:
        this.log(`unknown notification ${method}`);
    }
  }

  private session(id: string): SessionView {
    let s = this.sessions.get(id);
    if (!s) {
      s = { sessionId: id, state: 'starting', paused: false, debugSessions: new Set(), endedByUs: false };
      this.sessions.set(id, s);
    }
    return s;
  }

  // ---- status bar ----------------------------------------------------------

  render(): void {
    const on = this.enabled;
    this.toggleItem.text = on ? '$(debug-alt) doppel: on' : '$(circle-slash) doppel: off';
    this.toggleItem.tooltip = on
      ? 'doppel is on: debug launches run as if inside the target pod. Click to turn it off.'
      : 'doppel is off: debug launches run as usual. Click to turn it on.';
    this.toggleItem.backgroundColor = on ? new vscode.ThemeColor('statusBarItem.warningBackground') : undefined;
    this.toggleItem.show();

    const t = this.target;
    const live = [...this.sessions.values()].filter((s) => s.state !== 'ended');
    const cur = live[live.length - 1];
    let text = `$(target) ${t ? describeTarget(t) : 'target: from config'}`;
    let tooltip = 'Click to choose the target of doppel launches.';
    if (this.helperProblem && on) {
      text = `$(warning) doppel: helper unavailable`;
      tooltip = this.helperProblem;
    } else if (cur) {
      const icon = { starting: '$(sync~spin)', ready: '$(pass-filled)', reconnecting: '$(sync~spin)', ended: '$(circle-outline)' }[cur.state];
      const where = cur.target ? `${cur.target.namespace ? cur.target.namespace + '/' : ''}${cur.target.path}` : t ? describeTarget(t) : '';
      text = `${icon} doppel ${where}: ${cur.paused ? 'paused' : cur.state}`;
      tooltip = `doppel session ${cur.sessionId}${cur.target?.pod ? `, pod ${cur.target.pod}` : ''}: ${cur.state}${cur.reason ? ` (${cur.reason})` : ''}. Click to choose the target.`;
    }
    this.sessionItem.text = text;
    this.sessionItem.tooltip = tooltip;
    if (on || cur) this.sessionItem.show();
    else this.sessionItem.hide();
  }

  // ---- target picker -------------------------------------------------------

  async selectTarget(): Promise<TargetChoice | undefined> {
    let namespace = this.target?.namespace ?? this.ctx.workspaceState.get<string>(NamespaceKey);
    for (;;) {
      type Item = vscode.QuickPickItem & { choice?: TargetChoice | null; changeNamespace?: boolean };
      let listed: ListTargetsResult | undefined;
      let failure: Error | undefined;
      const items: Promise<Item[]> = (async () => {
        const params: ListTargetsParams = {};
        if (namespace) params.namespace = namespace;
        const cfg = this.configFileSetting();
        if (cfg) params.configFile = cfg;
        try {
          listed = await this.request<ListTargetsResult>(Methods.listTargets, params);
        } catch (err) {
          failure = err as Error;
          return [];
        }
        namespace = namespace || listed.namespace || undefined;
        for (const w of listed.warnings ?? []) this.log(`listTargets: ${w}`);
        this.record('listTargets', { namespace: namespace ?? null, count: listed.targets.length });
        const out: Item[] = [
          { label: '$(circle-slash) No target', description: 'targetless: the cluster\'s network and DNS, no pod', choice: { path: 'targetless' } },
          { label: '$(settings-gear) Use the config file\'s target', description: 'the target of .doppel/ or .mirrord/', choice: null },
          {
            label: `$(symbol-namespace) Namespace: ${namespace ?? '(default)'}`,
            description: `change (${listed.namespaces.length} namespaces)`,
            changeNamespace: true,
            alwaysShow: true,
          },
        ];
        const byKind = new Map<string, TargetInfo[]>();
        for (const t of listed.targets) {
          const k = byKind.get(t.kind) ?? [];
          k.push(t);
          byKind.set(t.kind, k);
        }
        const kinds = [...byKind.keys()].sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
        for (const k of kinds) {
          out.push({ label: plural(k), kind: vscode.QuickPickItemKind.Separator });
          for (const t of byKind.get(k)!) {
            out.push({
              label: t.path,
              description: `${t.namespace}${t.ready ? '' : ' · not ready'}`,
              detail: [t.containers?.length ? `containers: ${t.containers.join(', ')}` : '', t.pods !== undefined ? `pods ready: ${t.readyPods ?? 0}/${t.pods}` : '']
                .filter(Boolean)
                .join(' · '),
              choice: { path: t.path, namespace: t.namespace },
            });
          }
        }
        return out;
      })();
      const picked = await vscode.window.showQuickPick(items, {
        title: 'doppel: target of debug launches',
        placeHolder: 'Choose the target (type to filter: deployment/backend…)',
        matchOnDescription: true,
        matchOnDetail: true,
        ignoreFocusOut: true,
      });
      if (failure) {
        await this.showRequestError('The targets could not be listed', failure);
        return undefined;
      }
      if (!picked) return undefined;
      if (picked.changeNamespace) {
        const ns = await vscode.window.showQuickPick(listed?.namespaces ?? [], {
          title: 'doppel: namespace',
          placeHolder: 'Namespace to list targets in',
          ignoreFocusOut: true,
        });
        if (ns) {
          namespace = ns;
          await this.ctx.workspaceState.update(NamespaceKey, ns);
        }
        continue;
      }
      const choice = picked.choice ?? undefined;
      await this.setTarget(choice);
      return choice;
    }
  }

  private configFileSetting(folder?: vscode.WorkspaceFolder): string | undefined {
    const v = this.settings().get<string>('configFile');
    if (!v) return undefined;
    if (path.isAbsolute(v)) return v;
    const base = folder ?? vscode.workspace.workspaceFolders?.[0];
    return base ? path.join(base.uri.fsPath, v) : v;
  }

  // ---- debug launches ------------------------------------------------------

  async resolveLaunch(
    folder: vscode.WorkspaceFolder | undefined,
    config: vscode.DebugConfiguration,
    token?: vscode.CancellationToken,
  ): Promise<vscode.DebugConfiguration | undefined> {
    if (!this.enabled) return config;
    // js-debug resolves its child sessions too (attach to each process): the
    // parent launch is the one doppel changes.
    if (config.request !== 'launch' || config.__pendingTargetId || config.doppel === false) return config;
    // A relaunch (restart) of a launch whose session still lives reuses it.
    const prior = typeof config[SessionKey] === 'string' ? this.sessions.get(config[SessionKey]) : undefined;
    const reuse = prior && prior.state !== 'ended' ? prior.sessionId : undefined;

    try {
      await this.ensureHelper();
    } catch (err) {
      await this.showRequestError('doppel could not start', err as Error);
      return undefined;
    }
    const types = this.helper?.initializeResult?.debugTypes ?? [];
    if (!types.includes(config.type)) {
      this.log(`debug type ${config.type} is not one doppel intercepts (${types.join(', ')}): launching it unchanged`);
      this.record('skipped', { type: config.type });
      return config;
    }

    // On reuse, the launch as it was before doppel changed it: the helper adds
    // its env again, and would add LD_PRELOAD twice to an already-resolved one.
    const launch = (reuse && prior?.launch ? { ...prior.launch } : { ...config }) as Launch;
    delete (launch as any)[SessionKey];
    delete (launch as any).doppel;
    const t = this.target;
    const params: ResolveLaunchParams = { launch };
    const wf = folder?.uri.scheme === 'file' ? folder.uri.fsPath : vscode.workspace.workspaceFolders?.[0]?.uri.fsPath;
    if (wf) params.workspaceFolder = wf;
    if (t) {
      params.target = t.path;
      if (t.namespace) params.namespace = t.namespace;
    }
    const cfg = this.configFileSetting(folder);
    if (cfg) params.configFile = cfg;
    if (reuse) params.sessionId = reuse;
    this.record('resolveLaunch', { type: config.type, name: config.name, target: t ?? null, reuse: reuse ?? null });

    const started = Date.now();
    let result: ResolveLaunchResult;
    try {
      result = await vscode.window.withProgress(
        { location: vscode.ProgressLocation.Notification, title: 'doppel', cancellable: true },
        async (progress, progressToken) => {
          progress.report({ message: `starting a session on ${t ? describeTarget(t) : "the config's target"}…` });
          const onProgress = (p: ProgressParams) => progress.report({ message: `${p.step} (${(p.elapsedMs / 1000).toFixed(1)} s)` });
          this.progressListeners.add(onProgress);
          const cancel = new vscode.CancellationTokenSource();
          const subs = [progressToken.onCancellationRequested(() => cancel.cancel())];
          if (token) subs.push(token.onCancellationRequested(() => cancel.cancel()));
          try {
            const pending = this.request<ResolveLaunchResult>(Methods.resolveLaunch, params, cancel.token);
            return await new Promise<ResolveLaunchResult>((resolve, reject) => {
              pending.then(resolve, reject);
              cancel.token.onCancellationRequested(() => {
                // The helper may still start the session: end it when it comes.
                pending.then((r) => this.endSession(r.sessionId), () => undefined);
                reject(new HelperError('The launch was cancelled.', ClientErrorCodes.cancelled));
              });
            });
          } finally {
            this.progressListeners.delete(onProgress);
            subs.forEach((s) => s.dispose());
            cancel.dispose();
          }
        },
      );
    } catch (err) {
      if (err instanceof HelperError && err.code === ClientErrorCodes.cancelled) {
        this.record('cancelled', {});
        return undefined;
      }
      await this.showRequestError('The debug launch could not be prepared', err as Error);
      return undefined;
    }
    const ms = Date.now() - started;
    const s = this.session(result.sessionId);
    s.target = result.target;
    s.launch = launch;
    if (s.state === 'starting') s.state = 'ready';
    for (const w of result.warnings ?? []) void vscode.window.showWarningMessage(`doppel: ${w}`);
    this.log(`launch "${config.name}" (${config.type}) resolved in ${ms} ms: session ${result.sessionId}${result.target ? ` on ${result.target.path}${result.target.pod ? ` (pod ${result.target.pod})` : ''}` : ''}`);
    this.record('resolved', { sessionId: result.sessionId, ms, target: result.target ?? null });
    this.lastResolved = { launch, result };
    this.render();
    return { ...(result.launch as vscode.DebugConfiguration), [SessionKey]: result.sessionId };
  }

  /** The doppel session a debug session (or one of its parents) runs in. */
  sessionOf(ds: vscode.DebugSession | undefined): string | undefined {
    for (let s = ds; s; s = s.parentSession) {
      const id = s.configuration?.[SessionKey];
      if (typeof id === 'string' && id) return id;
    }
    return undefined;
  }

  async debuggeeState(sessionId: string, paused: boolean): Promise<void> {
    const s = this.sessions.get(sessionId);
    if (!s || s.state === 'ended' || s.paused === paused) return;
    s.paused = paused;
    this.record('debuggeeState', { sessionId, paused });
    this.render();
    try {
      await this.request(Methods.debuggeeState, { sessionId, paused });
    } catch (err) {
      this.log(`debuggeeState: ${(err as Error).message}`);
    }
  }

  async endSession(sessionId: string): Promise<void> {
    const s = this.sessions.get(sessionId);
    if (s) {
      // A session that ended by itself (its agent lost) still holds what
      // the backend started for it (Delve, the preload socket): end it too.
      if (s.endedByUs) return;
      s.endedByUs = true;
    }
    this.record('endSession', { sessionId });
    try {
      if (this.helper?.running) await this.request(Methods.endSession, { sessionId });
    } catch (err) {
      if (!(err instanceof HelperError && err.code === ErrorCodes.unknownSession)) this.log(`endSession: ${(err as Error).message}`);
    }
    if (s) s.state = 'ended';
    this.render();
  }

  onDebugSessionStarted(ds: vscode.DebugSession): void {
    const id = ds.configuration?.[SessionKey];
    if (typeof id === 'string' && id) {
      this.session(id).debugSessions.add(ds.id);
      this.record('debugSessionStarted', { sessionId: id, debugSession: ds.id, type: ds.type });
    }
  }

  onDebugSessionEnded(ds: vscode.DebugSession): void {
    const id = ds.configuration?.[SessionKey];
    if (typeof id !== 'string' || !id) return;
    const s = this.sessions.get(id);
    s?.debugSessions.delete(ds.id);
    this.record('debugSessionEnded', { sessionId: id, debugSession: ds.id });
    if (!s || s.debugSessions.size === 0) void this.endSession(id);
  }

  // ---- config diagnostics --------------------------------------------------

  checkDocument(doc: vscode.TextDocument, delayMs = 300): void {
    if (!isConfigDocument(doc)) return;
    const key = doc.uri.toString();
    const prev = this.pendingChecks.get(key);
    if (prev) clearTimeout(prev);
    this.pendingChecks.set(
      key,
      setTimeout(() => {
        this.pendingChecks.delete(key);
        void this.checkNow(doc);
      }, delayMs),
    );
  }

  async checkNow(doc: vscode.TextDocument): Promise<vscode.Diagnostic[] | undefined> {
    const version = doc.version;
    try {
      const r = await this.request<CheckConfigResult>(Methods.checkConfig, { path: doc.uri.fsPath, text: doc.getText() });
      if (doc.version !== version) return undefined; // a newer check follows
      const out = toVsDiagnostics(r.diagnostics, doc);
      this.diagnostics.set(doc.uri, out);
      this.record('checkConfig', { path: doc.uri.fsPath, count: out.length });
      return out;
    } catch (err) {
      this.log(`checkConfig ${doc.uri.fsPath}: ${(err as Error).message}`);
      return undefined;
    }
  }

  // ---- messages and log ----------------------------------------------------

  log(line: string): void {
    this.output.appendLine(`[extension] ${line}`);
  }

  record(kind: string, fields: Record<string, unknown>): void {
    this.events.push({ at: Date.now(), kind, ...fields });
    if (this.events.length > 500) this.events.splice(0, this.events.length - 500);
  }

  async showError(msg: string, pointAtLog: boolean): Promise<void> {
    const action = await vscode.window.showErrorMessage(msg, ...(pointAtLog ? ['Show Log'] : []));
    if (action === 'Show Log') this.output.show(true);
  }

  async showRequestError(what: string, err: Error): Promise<void> {
    this.log(`${what}: ${err.message}`);
    this.record('error', { what, message: err.message, code: (err as HelperError).code ?? null });
    if (err instanceof HelperError) {
      if (err.code === ErrorCodes.configInvalid && err.data?.diagnostics) {
        const p: string | undefined = err.data.path;
        if (p) {
          const uri = vscode.Uri.file(p);
          const doc = vscode.workspace.textDocuments.find((d) => d.uri.fsPath === uri.fsPath);
          this.diagnostics.set(uri, toVsDiagnostics(err.data.diagnostics, doc));
        }
      }
      const internal = err.code === ErrorCodes.internal || err.code === ClientErrorCodes.exited;
      await this.showError(`doppel: ${err.message}`, internal || err.code === ClientErrorCodes.notFound);
      return;
    }
    await this.showError(`doppel: ${what}: ${err.message}`, true);
  }

  snapshot() {
    return {
      enabled: this.enabled,
      target: this.target ?? null,
      helper: {
        running: this.helper?.running ?? false,
        pid: this.helper?.pid ?? null,
        problem: this.helperProblem ?? null,
        initialize: this.helper?.initializeResult ?? null,
      },
      statusBar: { toggle: this.toggleItem.text, session: this.sessionItem.text },
      sessions: [...this.sessions.values()].map((s) => ({
        sessionId: s.sessionId,
        state: s.state,
        paused: s.paused,
        target: s.target ?? null,
        reason: s.reason ?? null,
        debugSessions: s.debugSessions.size,
      })),
      lastResolved: this.lastResolved ?? null,
      diagnostics: collect(this.diagnostics),
      events: this.events,
    };
  }

  dispose(): void {
    for (const t of this.pendingChecks.values()) clearTimeout(t);
    this.disposables.forEach((d) => d.dispose());
  }
}

function collect(dc: vscode.DiagnosticCollection) {
  const out: Record<string, { message: string; line: number; character: number; severity: string; code: unknown }[]> = {};
  dc.forEach((uri, diags) => {
    out[uri.fsPath] = diags.map((d) => ({
      message: d.message,
      line: d.range.start.line,
      character: d.range.start.character,
      severity: d.severity === vscode.DiagnosticSeverity.Warning ? 'warning' : 'error',
      code: d.code ?? null,
    }));
  });
  return out;
}

export function describeTarget(t: TargetChoice): string {
  if (t.path === 'targetless') return 'no target';
  return t.namespace ? `${t.namespace}/${t.path}` : t.path;
}

function rank(kind: string): number {
  const i = kindOrder.indexOf(kind);
  return i < 0 ? kindOrder.length : i;
}

function plural(kind: string): string {
  const names: Record<string, string> = {
    deployment: 'Deployments',
    rollout: 'Rollouts',
    statefulset: 'StatefulSets',
    daemonset: 'DaemonSets',
    job: 'Jobs',
    cronjob: 'CronJobs',
    replicaset: 'ReplicaSets',
    pod: 'Pods',
  };
  return names[kind] ?? kind;
}

let instance: Doppel | undefined;

export function activate(ctx: vscode.ExtensionContext) {
  const d = new Doppel(ctx);
  instance = d;
  ctx.subscriptions.push(d);

  ctx.subscriptions.push(
    vscode.commands.registerCommand('doppel.toggle', () => d.setEnabled(!d.enabled)),
    vscode.commands.registerCommand('doppel.enable', () => d.setEnabled(true)),
    vscode.commands.registerCommand('doppel.disable', () => d.setEnabled(false)),
    vscode.commands.registerCommand('doppel.selectTarget', () => d.selectTarget()),
    vscode.commands.registerCommand('doppel.showLog', () => d.output.show(true)),
    vscode.commands.registerCommand('doppel.restartHelper', async () => {
      await d.stopHelper();
      await d.ensureHelper().catch((e) => d.showRequestError('The helper could not start', e));
    }),
  );

  ctx.subscriptions.push(
    vscode.debug.registerDebugConfigurationProvider('*', {
      resolveDebugConfigurationWithSubstitutedVariables: (folder, config, token) => d.resolveLaunch(folder, config, token),
    }),
    vscode.debug.registerDebugAdapterTrackerFactory('*', {
      createDebugAdapterTracker(ds) {
        if (!d.sessionOf(ds)) return undefined;
        return {
          onDidSendMessage(m: any) {
            const id = d.sessionOf(ds);
            if (!id || !m) return;
            if (m.type === 'event' && m.event === 'stopped') void d.debuggeeState(id, true);
            else if (m.type === 'event' && m.event === 'continued') void d.debuggeeState(id, false);
            else if (m.type === 'response' && m.success && resumingRequests.has(m.command)) void d.debuggeeState(id, false);
          },
        };
      },
    }),
    vscode.debug.onDidStartDebugSession((ds) => d.onDebugSessionStarted(ds)),
    vscode.debug.onDidTerminateDebugSession((ds) => d.onDebugSessionEnded(ds)),
  );

  ctx.subscriptions.push(
    vscode.workspace.onDidOpenTextDocument((doc) => d.checkDocument(doc, 0)),
    vscode.workspace.onDidChangeTextDocument((e) => d.checkDocument(e.document)),
    vscode.workspace.onDidSaveTextDocument((doc) => d.checkDocument(doc, 0)),
    vscode.workspace.onDidChangeConfiguration(async (e) => {
      if (['helperPath', 'kubeconfig', 'context', 'logLevel'].some((k) => e.affectsConfiguration(`doppel.${k}`))) {
        d.log('settings changed: restarting the helper');
        await d.stopHelper();
        if (d.enabled || vscode.workspace.textDocuments.some(isConfigDocument)) await d.ensureHelper().catch(() => undefined);
      }
    }),
  );

  // Test-only: the end-to-end tier (code-server has no extension test
  // runner) runs this command from the palette and reads the file.
  const results = process.env.DOPPEL_VSCODE_TEST_RESULTS;
  if (results) {
    void vscode.commands.executeCommand('setContext', 'doppel.testMode', true);
    ctx.subscriptions.push(
      vscode.commands.registerCommand('doppel.test.writeState', async () => {
        fs.writeFileSync(results, JSON.stringify(d.snapshot(), null, 2));
        void vscode.window.showInformationMessage(`doppel test state written to ${results}`);
      }),
    );
  }

  d.render();
  // The helper watches the config files from the start (doppel/configDiagnostics),
  // so start it when the workspace has any, or when doppel is on.
  const hasConfig = (vscode.workspace.workspaceFolders ?? []).some(
    (f) => f.uri.scheme === 'file' && (fs.existsSync(path.join(f.uri.fsPath, '.doppel')) || fs.existsSync(path.join(f.uri.fsPath, '.mirrord'))),
  );
  if (d.enabled || hasConfig) {
    void d.ensureHelper().then(
      () => vscode.workspace.textDocuments.forEach((doc) => d.checkDocument(doc, 0)),
      () => undefined,
    );
  }

  return {
    snapshot: () => d.snapshot(),
    selectTarget: () => d.selectTarget(),
    checkDocument: (doc: vscode.TextDocument) => d.checkNow(doc),
    stopHelper: () => d.stopHelper(),
    /** A request to the helper, as the extension sends it (for tests and other extensions). */
    request: <T>(method: string, params?: unknown) => d.helperRequest<T>(method, params),
  };
}

export async function deactivate(): Promise<void> {
  const d = instance;
  instance = undefined;
  if (!d) return;
  await d.stopHelper();
}

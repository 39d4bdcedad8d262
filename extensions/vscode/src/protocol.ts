// The types of docs/ide-protocol.md (version 1), as this extension uses them.
// helper/ide/types.go is their Go form; the page is the contract.

export const ProtocolVersion = 1;

export const Methods = {
  initialize: 'initialize',
  shutdown: 'shutdown',
  exit: 'exit',
  listTargets: 'doppel/listTargets',
  getSchema: 'doppel/getSchema',
  checkConfig: 'doppel/checkConfig',
  resolveLaunch: 'doppel/resolveLaunch',
  endSession: 'doppel/endSession',
  debuggeeState: 'doppel/debuggeeState',
  listSessions: 'doppel/listSessions',
} as const;

export const Notifications = {
  progress: 'doppel/progress',
  sessionState: 'doppel/sessionState',
  notice: 'doppel/notice',
  configDiagnostics: 'doppel/configDiagnostics',
} as const;

export const ErrorCodes = {
  serverNotInitialized: -32002,
  configInvalid: -32010,
  cluster: -32011,
  unknownSession: -32012,
  unsupportedLaunch: -32013,
  internal: -32099,
} as const;

export interface InitializeParams {
  clientName?: string;
  clientVersion?: string;
  workspaceFolders?: string[];
}

export interface InitializeResult {
  serverName: string;
  serverVersion: string;
  protocolVersion: number;
  debugTypes: string[];
}

export interface ListTargetsParams {
  namespace?: string;
  allNamespaces?: boolean;
  context?: string;
  kubeconfig?: string;
  /** Supplies kubeconfig, kube_context and target.namespace (helper/ide/types.go). */
  configFile?: string;
}

export interface TargetInfo {
  path: string;
  kind: string;
  name: string;
  namespace: string;
  containers?: string[];
  ready: boolean;
  readyPods?: number;
  pods?: number;
}

export interface ListTargetsResult {
  namespace?: string;
  namespaces: string[];
  targets: TargetInfo[];
  warnings?: string[];
}

export interface Diagnostic {
  severity: 'error' | 'warning';
  message: string;
  keyPath?: string;
  line: number;
  column: number;
  code?: string;
}

export interface CheckConfigParams {
  path: string;
  text?: string;
}

export interface CheckConfigResult {
  diagnostics: Diagnostic[];
}

export type Launch = Record<string, unknown> & { type: string; request: string; name: string };

export interface ResolveLaunchParams {
  launch: Launch;
  workspaceFolder?: string;
  target?: string;
  namespace?: string;
  configFile?: string;
  sessionId?: string;
}

export interface TargetRef {
  path: string;
  namespace?: string;
  pod?: string;
  container?: string;
}

export interface ResolveLaunchResult {
  sessionId: string;
  launch: Launch;
  target?: TargetRef;
  warnings?: string[];
}

export interface SessionInfo {
  sessionId: string;
  target?: TargetRef;
  state: SessionStateName;
  paused: boolean;
  started: string;
}

export type SessionStateName = 'starting' | 'ready' | 'reconnecting' | 'ended';

export interface ProgressParams {
  sessionId: string;
  step: string;
  elapsedMs: number;
}

export interface SessionStateParams {
  sessionId: string;
  state: SessionStateName;
  reason?: string;
  category?: 'user' | 'config' | 'cluster' | 'internal';
}

export interface NoticeParams {
  sessionId?: string;
  severity: 'info' | 'warning' | 'error';
  message: string;
}

export interface ConfigDiagnosticsParams {
  path: string;
  diagnostics: Diagnostic[];
}

/** The config files doppel reads: .doppel/*.{json,yaml,yml} and .mirrord/*.json. */
export function isConfigPath(p: string): boolean {
  const norm = p.replace(/\\/g, '/');
  return /\/\.doppel\/[^/]+\.(json|ya?ml)$/.test(norm) || /\/\.mirrord\/[^/]+\.json$/.test(norm);
}

// The connection to `doppel ide`: one helper process per window, JSON-RPC 2.0
// with Content-Length framing on its stdin/stdout, its log on stderr.
// Nothing here imports vscode, so it runs under plain Node too.

import { ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  createMessageConnection,
  MessageConnection,
  ResponseError,
  StreamMessageReader,
  StreamMessageWriter,
  CancellationToken,
} from 'vscode-jsonrpc/node';
import { ErrorCodes, InitializeParams, InitializeResult, Methods } from './protocol';

/** An error the helper answered with, or one about reaching it. */
export class HelperError extends Error {
  constructor(
    message: string,
    readonly code: number,
    readonly data?: any,
    readonly method?: string,
  ) {
    super(message);
    this.name = 'HelperError';
  }

  get category(): string | undefined {
    if (this.data && typeof this.data.category === 'string') return this.data.category;
    if (this.code === ErrorCodes.configInvalid) return 'config';
    if (this.code === ErrorCodes.internal) return 'internal';
    return undefined;
  }
}

/** Codes of errors that are not the helper's answer. */
export const ClientErrorCodes = {
  notFound: -1, // no helper binary
  exited: -2, // the helper died
  cancelled: -32800, // LSP's RequestCancelled
} as const;

export interface HelperOptions {
  /** Absolute path of the doppel binary, or a bare name looked up on PATH. */
  command: string;
  args?: string[];
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** One line of the helper's stderr, or of this client's own log. */
  log: (line: string) => void;
  /** Server → client notifications. */
  onNotification: (method: string, params: any) => void;
  /** The helper process ended (expected or not). */
  onExit?: (code: number | null, signal: NodeJS.Signals | null, expected: boolean) => void;
}

/**
 * Finds the helper: the `doppel.helperPath` setting when set, else the binary
 * shipped in the extension (bin/doppel beside dist/), else `doppel` on PATH.
 */
export function findHelper(setting: string | undefined, extensionDir: string, envPath = process.env.PATH ?? ''): string | undefined {
  const isExec = (p: string) => {
    try {
      fs.accessSync(p, fs.constants.X_OK);
      return fs.statSync(p).isFile();
    } catch {
      return false;
    }
  };
  if (setting && setting.trim() !== '') {
    return setting.trim();
  }
  const shipped = path.join(extensionDir, 'bin', 'doppel');
  if (fs.existsSync(shipped) && !isExec(shipped)) {
    // A .vsix is a zip: some installers drop the executable bit.
    try {
      fs.chmodSync(shipped, 0o755);
    } catch {
      // read-only install: fall through to PATH
    }
  }
  if (isExec(shipped)) return shipped;
  for (const dir of envPath.split(path.delimiter)) {
    if (dir && isExec(path.join(dir, 'doppel'))) return path.join(dir, 'doppel');
  }
  return undefined;
}

export class Helper {
  private proc: ChildProcess | undefined;
  private conn: MessageConnection | undefined;
  private starting: Promise<InitializeResult> | undefined;
  private stopping = false;
  private stderrRest = '';
  initializeResult: InitializeResult | undefined;

  constructor(private readonly opts: HelperOptions) {}

  get running(): boolean {
    return this.conn !== undefined;
  }

  get pid(): number | undefined {
    return this.proc?.pid;
  }

  /** Starts the helper and initializes it, once; later calls share the start. */
  start(init: InitializeParams): Promise<InitializeResult> {
    if (!this.starting) {
      this.starting = this.doStart(init).catch((err) => {
        this.starting = undefined;
        this.teardown();
        throw err;
      });
    }
    return this.starting;
  }

  private async doStart(init: InitializeParams): Promise<InitializeResult> {
    this.stopping = false;
    const args = this.opts.args ?? ['ide'];
    this.opts.log(`[extension] starting ${this.opts.command} ${args.join(' ')}`);
    const proc = spawn(this.opts.command, args, {
      cwd: this.opts.cwd,
      env: this.opts.env ?? process.env,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    this.proc = proc;
    const spawned = new Promise<void>((resolve, reject) => {
      proc.once('spawn', () => resolve());
      proc.once('error', (err: NodeJS.ErrnoException) => {
        const msg =
          err.code === 'ENOENT'
            ? `The doppel helper was not found (${this.opts.command}): set doppel.helperPath or put doppel on PATH.`
            : `The doppel helper could not be started (${this.opts.command}): ${err.message}`;
        reject(new HelperError(msg, ClientErrorCodes.notFound));
      });
    });
    proc.stderr!.setEncoding('utf8');
    proc.stderr!.on('data', (chunk: string) => {
      const text = this.stderrRest + chunk;
      const lines = text.split('\n');
      this.stderrRest = lines.pop() ?? '';
      for (const l of lines) if (l.trim() !== '') this.opts.log(l);
    });
    proc.on('exit', (code, signal) => {
      if (this.stderrRest.trim() !== '') this.opts.log(this.stderrRest);
      this.stderrRest = '';
      const expected = this.stopping;
      this.opts.log(`[extension] the helper exited (${signal ?? `code ${code}`})${expected ? '' : ' unexpectedly'}`);
      if (this.proc === proc) this.teardown();
      this.opts.onExit?.(code, signal, expected);
    });
    await spawned;

    const conn = createMessageConnection(new StreamMessageReader(proc.stdout!), new StreamMessageWriter(proc.stdin!));
    conn.onNotification((method, params) => {
      try {
        this.opts.onNotification(method, params);
      } catch (err) {
        this.opts.log(`[extension] handling ${method}: ${String(err)}`);
      }
    });
    conn.onError(([err]) => this.opts.log(`[extension] JSON-RPC: ${err.message}`));
    conn.onClose(() => {
      if (this.conn === conn) this.conn = undefined;
    });
    conn.listen();
    this.conn = conn;
    const res = await this.send<InitializeResult>(Methods.initialize, init);
    this.initializeResult = res;
    this.opts.log(`[extension] ${res.serverName} ${res.serverVersion}, protocol ${res.protocolVersion}, debug types ${res.debugTypes.join(', ')}`);
    return res;
  }

  private teardown() {
    const conn = this.conn;
    this.conn = undefined;
    this.proc = undefined;
    this.starting = undefined;
    this.initializeResult = undefined;
    conn?.dispose();
  }

  private async send<T>(method: string, params?: unknown, token?: CancellationToken): Promise<T> {
    const conn = this.conn;
    if (!conn) throw new HelperError('The doppel helper is not running.', ClientErrorCodes.exited, undefined, method);
    try {
      // vscode-jsonrpc sends several trailing arguments as an array: pass
      // exactly the params object and, only when there is one, the token.
      const args: unknown[] = params === undefined ? [] : [params];
      if (token) args.push(token);
      return (await (conn.sendRequest as (m: string, ...a: unknown[]) => Promise<unknown>)(method, ...args)) as T;
    } catch (err) {
      if (err instanceof ResponseError) {
        throw new HelperError(err.message, err.code, err.data, method);
      }
      const e = err as Error;
      throw new HelperError(`The doppel helper stopped answering (${method}): ${e?.message ?? String(err)}`, ClientErrorCodes.exited, undefined, method);
    }
  }

  /** Sends a request, starting the helper first if needed. */
  async request<T>(init: InitializeParams, method: string, params?: unknown, token?: CancellationToken): Promise<T> {
    await this.start(init);
    return this.send<T>(method, params, token);
  }

  /** shutdown, then exit; kills the process if it is still there after a grace period. */
  async stop(graceMs = 3000): Promise<void> {
    // A start under way finishes first, so that nothing is written to the
    // helper's stdin after it is closed.
    if (this.starting) await Promise.race([this.starting.catch(() => undefined), delay(graceMs)]);
    const proc = this.proc;
    const conn = this.conn;
    this.stopping = true;
    if (!proc) return;
    const exited = new Promise<void>((resolve) => {
      if (proc.exitCode !== null || proc.signalCode !== null) resolve();
      else proc.once('exit', () => resolve());
    });
    if (conn) {
      try {
        await Promise.race([conn.sendRequest(Methods.shutdown), delay(graceMs)]);
        await Promise.race([conn.sendNotification(Methods.exit), delay(graceMs)]);
      } catch {
        // already gone
      }
    }
    const timer = setTimeout(() => proc.kill('SIGKILL'), graceMs);
    try {
      proc.stdin?.end();
    } catch {
      // closed
    }
    await exited;
    clearTimeout(timer);
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms).unref?.());
}

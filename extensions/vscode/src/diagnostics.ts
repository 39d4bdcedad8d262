// Config diagnostics: doppel/checkConfig for open (and unsaved) config
// documents, doppel/configDiagnostics pushed by the helper when files under
// .doppel/ or .mirrord/ change on disk. Both land in one DiagnosticCollection.

import * as vscode from 'vscode';
import { Diagnostic, isConfigPath } from './protocol';

export function toVsDiagnostics(diags: Diagnostic[], doc?: vscode.TextDocument): vscode.Diagnostic[] {
  return diags.map((d) => {
    const line = Math.max(0, (d.line || 1) - 1);
    let range: vscode.Range;
    if (d.line > 0 && d.column > 0) {
      const col = d.column - 1;
      let end = col + Math.max(1, lastKey(d.keyPath).length);
      if (doc && line < doc.lineCount) {
        const text = doc.lineAt(line).text;
        // the key at the column (quoted, or up to ':' or whitespace), else the rest of the line
        const m = /^"[^"]*"|^'[^']*'|^[^:\s]+/.exec(text.slice(col));
        end = m ? col + m[0].length : Math.max(col + 1, text.length);
      }
      range = new vscode.Range(line, col, line, end);
    } else if (d.line > 0) {
      const len = doc && line < doc.lineCount ? doc.lineAt(line).text.length : 1000;
      range = new vscode.Range(line, 0, line, len);
    } else {
      range = new vscode.Range(0, 0, 0, doc && doc.lineCount > 0 ? doc.lineAt(0).text.length : 1);
    }
    const out = new vscode.Diagnostic(
      range,
      d.message,
      d.severity === 'warning' ? vscode.DiagnosticSeverity.Warning : vscode.DiagnosticSeverity.Error,
    );
    out.source = 'doppel';
    if (d.code) out.code = d.code;
    return out;
  });
}

function lastKey(keyPath?: string): string {
  if (!keyPath) return '';
  const parts = keyPath.split('.');
  return parts[parts.length - 1] ?? '';
}

export function isConfigDocument(doc: vscode.TextDocument): boolean {
  return doc.uri.scheme === 'file' && isConfigPath(doc.uri.fsPath);
}

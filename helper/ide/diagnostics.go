package ide

import (
	"strings"

	"github.com/doppel-dev/doppel/helper/config"
)

// checkConfig parses a config file (or its unsaved text) and returns every
// error and warning, located. A valid file gives an empty list.
func checkConfig(path string, text *string) []Diagnostic {
	var cfg *config.Config
	var err error
	if text != nil {
		cfg, err = config.Parse([]byte(*text), path)
	} else {
		cfg, err = config.Load(path)
	}
	if err != nil {
		if diags, _, ok := configDiagnostics(err); ok {
			return diags
		}
		return []Diagnostic{{Severity: "error", Message: err.Error(), Code: "io"}}
	}
	return diagnosticsOf(cfg.Warnings)
}

// diagnosticsOf converts config findings; never nil.
func diagnosticsOf(list config.ErrorList) []Diagnostic {
	out := make([]Diagnostic, 0, len(list))
	for _, e := range list {
		out = append(out, diagnosticOf(e))
	}
	return out
}

// diagnosticOf is one finding without the file and location prefix its
// Error() has (the editor shows it at Line and Column).
func diagnosticOf(e *config.Error) Diagnostic {
	bare := *e
	bare.File, bare.Line, bare.Column = "", 0, 0
	bare.Severity = config.SeverityError // no "warning: " prefix
	msg := bare.Error()
	if msg == "" && e.Err != nil {
		msg = e.Err.Error()
	}
	return Diagnostic{
		Severity: e.Severity.String(),
		Message:  msg,
		KeyPath:  e.KeyPath,
		Line:     e.Line,
		Column:   e.Column,
		Code:     strings.ReplaceAll(string(e.Code), "-", "_"),
	}
}

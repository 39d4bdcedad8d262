package config

import (
	"path/filepath"
	"slices"
	"strings"
)

// DefaultBuildTools are the programs that run without interception when
// skip_build_tools is on (the default): compilers, linkers, build systems,
// package managers, hot-reload runners and debuggers. They build or start
// the program; the program itself, their child, is intercepted. mirrord's
// list, plus the C, Java and JavaScript toolchains. Launchers that are
// scripts run as their interpreter (mvn and gradle run as "java") and
// cannot be recognized by name.
var DefaultBuildTools = []string{
	// Go.
	"go", "compile", "link", "asm", "cgo", "vet", "air", "dlv", "gopls",
	// Rust.
	"cargo", "rustc", "cargo-watch", "rust-lld",
	// C and C++.
	"cc", "cc1", "cc1plus", "gcc", "g++", "c++", "clang", "clang++", "as", "ld", "ld.gold", "ld.lld",
	"lld", "collect2", "ar", "make", "cmake", "ninja", "pkg-config",
	// Java and the JVM.
	"javac", "gradle", "mvn", "kotlinc",
	// JavaScript.
	"npm", "yarn", "pnpm", "node-gyp", "tsc", "esbuild",
	// Others.
	"git", "hpack", "gdb", "lldb", "debugserver",
}

// SkipsProcess reports whether a program runs without interception:
// skip_processes, and build tools when skip_build_tools is on. name is
// the program's executable path or name; its base name is compared.
func (c *Config) SkipsProcess(name string) bool {
	base := filepath.Base(name)
	if slices.Contains(c.SkipProcesses, base) {
		return true
	}
	return c.SkipBuildTools && (slices.Contains(DefaultBuildTools, base) || slices.Contains(c.SkipExtraBuildTools, base))
}

// SkipsDebuggerHelper reports whether a process is a debugger's own helper
// run by an interpreter, which can't be told by its executable: debugpy's
// launcher and adapter (`python …/debugpy/launcher …`, `python -m
// debugpy.adapter`). Skipped with the build tools.
func (c *Config) SkipsDebuggerHelper(args []string) bool {
	if !c.SkipBuildTools || len(args) < 2 {
		return false
	}
	for i, a := range args[1:] {
		a = strings.TrimSuffix(a, "/")
		switch {
		case strings.HasSuffix(a, "/debugpy/launcher"), strings.HasSuffix(a, "/debugpy/adapter"):
			return true
		case a == "-m" && i+2 < len(args):
			m := args[i+2]
			return m == "debugpy.launcher" || m == "debugpy.adapter"
		case !strings.HasPrefix(a, "-"):
			return false // the script: what follows is its own
		}
	}
	return false
}

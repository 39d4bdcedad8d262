package config

import (
	"path/filepath"
	"slices"
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

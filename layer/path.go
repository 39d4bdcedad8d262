package layer

import "path"

// resolvePath makes p absolute against base (the process's cwd or the path
// of its dirfd) and cleans it lexically. Like the kernel it does not follow
// symlinks before "..": a Handler that cares must resolve them itself.
func resolvePath(base, p string) string {
	if path.IsAbs(p) {
		return path.Clean(p)
	}
	return path.Join(base, p)
}

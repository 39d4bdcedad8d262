//go:build linux

package files

import (
	"bytes"
	"encoding/binary"
	"io"
	"io/fs"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Root is a directory that paths resolve inside of.
type Root struct {
	fd int
}

// NewRoot uses fd, a directory descriptor (O_PATH is enough) that stays
// owned by the caller, as the root.
func NewRoot(fd int) *Root { return &Root{fd: fd} }

// Entry is one directory entry as getdents64 reports it.
type Entry struct {
	Name string
	Ino  uint64
	// Type is the entry's S_IFMT bits, 0 when the filesystem did not say.
	Type uint32
}

// resolveRetries bounds retries of openat2, which returns EAGAIN when a
// concurrent rename could have let ".." escape and asks to try again.
const resolveRetries = 32

// open resolves name (absolute, in the root) with openat2.
func (r *Root) open(op, name string, flags uint64) (int, error) {
	// Not path.Clean: "link/.." is the link target's parent, "file/" is
	// ENOTDIR, as for the container itself; RESOLVE_IN_ROOT (and walk)
	// keep ".." in the root.
	rel := strings.TrimLeft(name, "/")
	if rel == "" {
		rel = "."
	}
	how := unix.OpenHow{
		Flags: flags | unix.O_CLOEXEC,
		// Magic links (/proc/self/root, /proc/*/fd/*) would lead out of
		// the root: never follow them.
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	}
	for range resolveRetries {
		if !haveOpenat2.Load() {
			fd, err := r.walk(rel, flags)
			if err != nil {
				return -1, &fs.PathError{Op: op, Path: name, Err: err}
			}
			return fd, nil
		}
		fd, err := unix.Openat2(r.fd, rel, &how)
		if err == unix.EAGAIN || err == unix.EINTR {
			continue
		}
		if err == unix.ENOSYS || err == unix.EPERM && r.noOpenat2() {
			// Linux before 5.6, or a seccomp profile without openat2.
			haveOpenat2.Store(false)
			continue
		}
		if err != nil {
			return -1, &fs.PathError{Op: op, Path: name, Err: err}
		}
		return fd, nil
	}
	return -1, &fs.PathError{Op: op, Path: name, Err: unix.EAGAIN}
}

// haveOpenat2 is false once openat2 turned out missing; resolution then
// walks the path itself (walk). A variable for tests.
var haveOpenat2 atomic.Bool

func init() { haveOpenat2.Store(true) }

// noOpenat2 tells an EPERM of a seccomp profile that refuses openat2 from
// one of the file's own: "." of the root always resolves.
func (r *Root) noOpenat2() bool {
	fd, err := unix.Openat2(r.fd, ".", &unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC, Resolve: unix.RESOLVE_IN_ROOT})
	if err == nil {
		unix.Close(fd)
		return false
	}
	return err == unix.EPERM || err == unix.ENOSYS
}

// isMagicLink: a procfs link that stands for an object rather than a path
// (/proc/PID/root, cwd, exe, fd/N, ns/*): its text is absolute or names
// an object ("socket:[123]"). /proc/self and /proc/mounts are plain.
func isMagicLink(fd int, target string) bool {
	var fsst unix.Statfs_t
	if unix.Fstatfs(fd, &fsst) != nil || fsst.Type != unix.PROC_SUPER_MAGIC {
		return false
	}
	return strings.HasPrefix(target, "/") || strings.Contains(target, ":[")
}

// maxSymlinks is the kernel's bound on symlinks followed in one lookup.
const maxSymlinks = 40

// walk resolves rel as RESOLVE_IN_ROOT|RESOLVE_NO_MAGICLINKS do, without
// openat2: one component at a time, never following a symlink in the
// kernel (O_NOFOLLOW) but reading it and going on from the root (absolute)
// or from its directory, with ".." never above the root. A magic link is
// only ever read as text, so it can't lead out. The result is opened as
// flags ask: O_PATH directly, anything else by reopening the O_PATH
// descriptor through /proc/self/fd (no second resolution).
func (r *Root) walk(rel string, flags uint64) (int, error) {
	if flags&unix.O_CREAT != 0 || flags&unix.O_TMPFILE == unix.O_TMPFILE { // O_TMPFILE holds O_DIRECTORY
		return -1, unix.EINVAL // lookups only: nothing is created in the pod
	}
	root, err := unix.Openat(r.fd, ".", unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	dirs := []int{root} // dirs[len-1] is where the walk is
	defer func() {
		for _, fd := range dirs {
			unix.Close(fd)
		}
	}()
	parts := strings.Split(rel, "/")
	links := 0
	for len(parts) > 0 {
		name := parts[0]
		parts = parts[1:]
		switch name {
		case "", ".":
			continue
		case "..":
			if len(dirs) > 1 {
				unix.Close(dirs[len(dirs)-1])
				dirs = dirs[:len(dirs)-1]
			}
			continue
		}
		last := len(parts) == 0
		fd, err := unix.Openat(dirs[len(dirs)-1], name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return -1, err
		}
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			unix.Close(fd)
			return -1, err
		}
		isLink := st.Mode&unix.S_IFMT == unix.S_IFLNK
		if isLink && !(last && flags&unix.O_NOFOLLOW != 0) {
			links++
			buf := make([]byte, unix.PathMax)
			n, err := unix.Readlinkat(fd, "", buf)
			magic := err == nil && isMagicLink(fd, string(buf[:n]))
			unix.Close(fd)
			if err != nil {
				return -1, err
			}
			if links > maxSymlinks || magic {
				return -1, unix.ELOOP // as RESOLVE_NO_MAGICLINKS
			}
			target := string(buf[:n])
			if strings.HasPrefix(target, "/") {
				for _, d := range dirs[1:] {
					unix.Close(d)
				}
				dirs = dirs[:1]
			}
			parts = append(strings.Split(target, "/"), parts...)
			continue
		}
		if !last && st.Mode&unix.S_IFMT != unix.S_IFDIR {
			unix.Close(fd)
			return -1, unix.ENOTDIR
		}
		dirs = append(dirs, fd)
	}
	end := dirs[len(dirs)-1]
	if flags&unix.O_PATH != 0 {
		if flags&unix.O_DIRECTORY != 0 {
			var st unix.Stat_t
			if err := unix.Fstat(end, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
				return -1, unix.ENOTDIR
			}
		}
		dirs = dirs[:len(dirs)-1] // kept: the caller's
		return end, nil
	}
	// O_NOFOLLOW is done with (the walk honoured it): on the reopen it
	// would refuse the /proc/self/fd link itself.
	return unix.Open("/proc/self/fd/"+strconv.Itoa(end), int(flags&^unix.O_NOFOLLOW)|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
}

func fstat(op, name string, fd int) (unix.Stat_t, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return st, &fs.PathError{Op: op, Path: name, Err: err}
	}
	return st, nil
}

// Stat stats name, following symlinks inside the root.
func (r *Root) Stat(name string) (unix.Stat_t, error) {
	fd, err := r.open("stat", name, unix.O_PATH)
	if err != nil {
		return unix.Stat_t{}, err
	}
	defer unix.Close(fd)
	return fstat("stat", name, fd)
}

// Lstat stats name without following a final symlink.
func (r *Root) Lstat(name string) (unix.Stat_t, error) {
	fd, err := r.open("lstat", name, unix.O_PATH|unix.O_NOFOLLOW)
	if err != nil {
		return unix.Stat_t{}, err
	}
	defer unix.Close(fd)
	return fstat("lstat", name, fd)
}

// Readlink returns the content of the symlink name.
func (r *Root) Readlink(name string) (string, error) {
	fd, err := r.open("readlink", name, unix.O_PATH|unix.O_NOFOLLOW)
	if err != nil {
		return "", err
	}
	defer unix.Close(fd)
	st, err := fstat("readlink", name, fd)
	if err != nil {
		return "", err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFLNK {
		return "", &fs.PathError{Op: "readlink", Path: name, Err: unix.EINVAL}
	}
	// readlinkat with an empty path reads the link an O_PATH fd refers to.
	buf := make([]byte, unix.PathMax)
	n, err := unix.Readlinkat(fd, "", buf)
	if err != nil {
		return "", &fs.PathError{Op: "readlink", Path: name, Err: err}
	}
	return string(buf[:n]), nil
}

// Open opens the regular file name for reading, following symlinks inside
// the root. Other kinds of file are refused (EISDIR, EINVAL): opening a
// FIFO or a device can block or have effects in the pod.
func (r *Root) Open(name string) (*os.File, unix.Stat_t, error) {
	fd, err := r.open("open", name, unix.O_PATH)
	if err != nil {
		return nil, unix.Stat_t{}, err
	}
	defer unix.Close(fd)
	st, err := fstat("open", name, fd)
	if err != nil {
		return nil, st, err
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
	case unix.S_IFDIR:
		return nil, st, &fs.PathError{Op: "open", Path: name, Err: unix.EISDIR}
	default:
		return nil, st, &fs.PathError{Op: "open", Path: name, Err: unix.EINVAL}
	}
	// Reopening the O_PATH descriptor through /proc/self/fd opens exactly
	// the file just checked, with no second path resolution to race.
	rfd, err := unix.Open("/proc/self/fd/"+strconv.Itoa(fd), unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, st, &fs.PathError{Op: "open", Path: name, Err: err}
	}
	return os.NewFile(uintptr(rfd), name), st, nil
}

// ReadFile returns the content of the regular file name, up to limit
// bytes (EFBIG beyond).
func (r *Root) ReadFile(name string, limit int64) ([]byte, error) {
	f, _, err := r.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, &fs.PathError{Op: "read", Path: name, Err: unix.EFBIG}
	}
	return data, nil
}

// ReadDir returns the entries of directory name, without "." and "..",
// sorted by name.
func (r *Root) ReadDir(name string) ([]Entry, error) {
	fd, err := r.open("readdir", name, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	var entries []Entry
	buf := make([]byte, 32<<10)
	for {
		n, err := unix.Getdents(fd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, &fs.PathError{Op: "readdir", Path: name, Err: err}
		}
		if n <= 0 {
			break
		}
		entries = appendDirents(entries, buf[:n])
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].Name < entries[j].Name })
	return entries, nil
}

// appendDirents decodes linux_dirent64 records: ino u64, off s64,
// reclen u16, type u8, then the NUL-terminated name.
func appendDirents(entries []Entry, buf []byte) []Entry {
	for len(buf) >= 19 {
		ino := binary.NativeEndian.Uint64(buf[0:8])
		reclen := int(binary.NativeEndian.Uint16(buf[16:18]))
		if reclen < 19 || reclen > len(buf) {
			break
		}
		typ := buf[18]
		nameBytes := buf[19:reclen]
		if i := bytes.IndexByte(nameBytes, 0); i >= 0 {
			nameBytes = nameBytes[:i]
		}
		buf = buf[reclen:]
		name := string(nameBytes)
		if name == "." || name == ".." {
			continue
		}
		entries = append(entries, Entry{Name: name, Ino: ino, Type: direntType(typ)})
	}
	return entries
}

// direntType maps DT_* to S_IFMT bits (DT_x == S_IFx >> 12).
func direntType(dt byte) uint32 {
	if dt == unix.DT_UNKNOWN {
		return 0
	}
	return uint32(dt) << 12
}

package session

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/doppel-dev/doppel/protocol"
)

// remoteFiles serves the pod's files to the local process: a regular file
// becomes a sealed memfd with the remote content; a directory becomes a
// local mirror directory whose entries are placeholders, so getdents lists
// the pod's names while stat of each entry is answered from the pod.
type remoteFiles struct {
	remote Remote
	dir    string // mirrors of remote directories live here

	mu      sync.Mutex
	mirrors map[string]string // mirror path -> remote path
	// rewrite adjusts the content of particular remote files on their way to
	// the process (resolv.conf gets `options use-vc`).
	rewrite map[string]func([]byte) []byte
}

func newRemoteFiles(remote Remote, dir string) *remoteFiles {
	return &remoteFiles{remote: remote, dir: dir, mirrors: map[string]string{}, rewrite: map[string]func([]byte) []byte{}}
}

// remotePath maps a path inside one of our directory mirrors back to the
// pod path it stands for; other paths are returned unchanged.
func (f *remoteFiles) remotePath(path string) (string, bool) {
	if !strings.HasPrefix(path, f.dir+"/") {
		return path, false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for p := path; p != f.dir && p != "/"; p = filepath.Dir(p) {
		if remote, ok := f.mirrors[p]; ok {
			rel, _ := filepath.Rel(p, path)
			return filepath.Join(remote, rel), true
		}
	}
	return path, false
}

// open returns a local file standing for the pod's path.
func (f *remoteFiles) open(ctx context.Context, path string) (*os.File, syscall.Errno) {
	info, err := f.remote.Stat(ctx, path)
	if err != nil {
		return nil, errnoOf(err, syscall.EIO)
	}
	if info.Mode&protocol.ModeTypeMask == protocol.ModeDir {
		return f.openDir(ctx, path)
	}
	if info.Size > maxRemoteFile {
		return nil, syscall.EFBIG
	}
	rc, _, err := f.remote.Open(ctx, path)
	if err != nil {
		return nil, errnoOf(err, syscall.EIO)
	}
	defer rc.Close()
	rw, rewritten := f.rewrite[path]
	if !rewritten {
		// Straight into the memfd: the file is held once, not also in
		// this process's heap.
		return memFileFrom(filepath.Base(path), io.LimitReader(rc, maxRemoteFile+1))
	}
	data, err := io.ReadAll(io.LimitReader(rc, maxRemoteFile+1))
	if err != nil {
		return nil, errnoOf(err, syscall.EIO)
	}
	if int64(len(data)) > maxRemoteFile { // grown since the stat
		return nil, syscall.EFBIG
	}
	file, err := memFile(filepath.Base(path), rw(data))
	if err != nil {
		return nil, syscall.EIO
	}
	return file, 0
}

// maxRemoteFile bounds a pod's file the local process opens: it is held in
// memory (a memfd) while open. A variable for tests.
var maxRemoteFile int64 = 1 << 30

// memFileFrom is memFile with what r yields; EFBIG past maxRemoteFile.
func memFileFrom(name string, r io.Reader) (*os.File, syscall.Errno) {
	file, err := newMemFile(name)
	if err != nil {
		return nil, syscall.EIO
	}
	n, err := io.Copy(file, r)
	switch {
	case err != nil:
		file.Close()
		return nil, errnoOf(err, syscall.EIO)
	case n > maxRemoteFile:
		file.Close()
		return nil, syscall.EFBIG
	}
	ro, err := sealMemFile(file)
	if err != nil {
		return nil, syscall.EIO
	}
	return ro, 0
}

func newMemFile(name string) (*os.File, error) {
	fd, err := unix.MemfdCreate("doppel:"+name, unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), name), nil
}

// memFile returns a read-only, sealed memfd holding data, positioned at 0.
func memFile(name string, data []byte) (*os.File, error) {
	file, err := newMemFile(name)
	if err != nil {
		return nil, err
	}
	if _, err := file.Write(data); err != nil {
		file.Close()
		return nil, err
	}
	return sealMemFile(file)
}

// sealMemFile seals a memfd written in full and returns it read-only at
// offset 0; file is closed.
func sealMemFile(file *os.File) (*os.File, error) {
	defer file.Close()
	// Sealed: the process cannot grow or write what it takes for the pod's file.
	unix.FcntlInt(file.Fd(), unix.F_ADD_SEALS, unix.F_SEAL_SEAL|unix.F_SEAL_SHRINK|unix.F_SEAL_GROW|unix.F_SEAL_WRITE)
	// Reopen read-only through /proc so the fd the process gets has O_RDONLY
	// (and its own offset, at 0).
	return os.Open(fmt.Sprintf("/proc/self/fd/%d", file.Fd()))
}

func (f *remoteFiles) openDir(ctx context.Context, path string) (*os.File, syscall.Errno) {
	entries, err := f.remote.ReadDir(ctx, path)
	if err != nil {
		return nil, errnoOf(err, syscall.EIO)
	}
	sum := sha256.Sum256([]byte(path))
	mirror := filepath.Join(f.dir, hex.EncodeToString(sum[:8]))
	tmp, err := os.MkdirTemp(f.dir, ".mirror-")
	if err != nil {
		return nil, syscall.EIO
	}
	for _, e := range entries {
		if e.Name == "." || e.Name == ".." || strings.Contains(e.Name, "/") {
			continue
		}
		p := filepath.Join(tmp, e.Name)
		switch e.Type & protocol.ModeTypeMask {
		case protocol.ModeDir:
			err = os.Mkdir(p, 0o755)
		case protocol.ModeSymlink:
			err = os.Symlink("doppel-remote-link", p)
		default:
			err = os.WriteFile(p, nil, 0o644)
		}
		if err != nil {
			os.RemoveAll(tmp)
			return nil, syscall.EIO
		}
	}
	// Swap the fresh listing in, so a reopened directory shows changes.
	f.mu.Lock()
	os.RemoveAll(mirror)
	err = os.Rename(tmp, mirror)
	f.mirrors[mirror] = path
	f.mu.Unlock()
	if err != nil {
		os.RemoveAll(tmp)
		return nil, syscall.EIO
	}
	dir, err := os.Open(mirror)
	if err != nil {
		return nil, syscall.EIO
	}
	return dir, 0
}

// stat answers the stat family from the pod.
func (f *remoteFiles) stat(ctx context.Context, path string, follow bool) (unix.Stat_t, syscall.Errno) {
	var info protocol.FileInfo
	var err error
	if follow {
		info, err = f.remote.Stat(ctx, path)
	} else {
		info, err = f.remote.Lstat(ctx, path)
	}
	if err != nil {
		return unix.Stat_t{}, errnoOf(err, syscall.EIO)
	}
	if rw, ok := f.rewrite[path]; ok && follow {
		// The process reads the rewritten content: its size must agree.
		if rc, _, err := f.remote.Open(ctx, path); err == nil {
			data, _ := io.ReadAll(rc)
			rc.Close()
			info.Size = int64(len(rw(data)))
		}
	}
	return statOf(info), 0
}

func (f *remoteFiles) readlink(ctx context.Context, path string) (string, syscall.Errno) {
	target, err := f.remote.Readlink(ctx, path)
	if err != nil {
		return "", errnoOf(err, syscall.EIO)
	}
	return target, 0
}

func statOf(info protocol.FileInfo) unix.Stat_t {
	st := unix.Stat_t{
		Dev: info.Dev, Ino: info.Ino, Nlink: info.Nlink, Mode: info.Mode, Uid: info.UID, Gid: info.GID,
		Rdev: info.Rdev, Size: info.Size, Blksize: info.Blksize, Blocks: info.Blocks,
	}
	st.Atim = unix.NsecToTimespec(info.Atime)
	st.Mtim = unix.NsecToTimespec(info.Mtime)
	st.Ctim = unix.NsecToTimespec(info.Ctime)
	if st.Nlink == 0 {
		st.Nlink = 1
	}
	if st.Blksize == 0 {
		st.Blksize = 4096
	}
	return st
}

// withUseVC appends `options use-vc` to a resolv.conf, so resolvers that
// check the source address of UDP answers (c-ares) ask over TCP instead.
func withUseVC(conf []byte) []byte {
	s := string(conf)
	if strings.Contains(s, "use-vc") {
		return conf
	}
	if s != "" && !strings.HasSuffix(s, "\n") {
		s += "\n"
	}
	return []byte(s + "options use-vc\n")
}

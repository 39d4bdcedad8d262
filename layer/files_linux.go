package layer

import (
	"os"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/doppel-dev/doppel/layer/seccomp"
)

const atFdcwd = -100 // AT_FDCWD as the int the kernel sees

// pathArg reads the path argument at addr and makes it absolute against the
// caller's cwd (dirfd AT_FDCWD) or dirfd. ok is false for an empty path
// (AT_EMPTY_PATH: an fd operation) and for dirfds that are not directories
// of the file system; those calls continue.
func (c *call) pathArg(dirfd int32, addr uint64) (string, bool) {
	p, err := seccomp.ReadString(c.tid(), addr, unix.PathMax)
	if err != nil || p == "" {
		return "", false
	}
	if strings.HasPrefix(p, "/") {
		return resolvePath("/", p), true
	}
	link := "/proc/" + strconv.Itoa(c.tid()) + "/cwd"
	if dirfd != atFdcwd {
		link = "/proc/" + strconv.Itoa(c.tid()) + "/fd/" + strconv.Itoa(int(dirfd))
	}
	base, err := os.Readlink(link)
	if err != nil || !strings.HasPrefix(base, "/") {
		return "", false
	}
	return resolvePath(base, p), true
}

// fileCall describes where a file syscall keeps its arguments.
type fileCall struct {
	dirfd    int  // index of the dirfd argument, or -1 for AT_FDCWD
	path     int  // index of the path argument
	flagsArg int  // index of the AT_* flags argument, or -1
	follow   bool // whether the call follows a final symlink by default
}

var fileCalls = map[int]fileCall{
	seccomp.SysOpen:       {-1, 0, -1, true},
	seccomp.SysOpenat:     {0, 1, -1, true},
	seccomp.SysOpenat2:    {0, 1, -1, true},
	seccomp.SysStat:       {-1, 0, -1, true},
	seccomp.SysLstat:      {-1, 0, -1, false},
	seccomp.SysNewfstatat: {0, 1, 3, true},
	seccomp.SysStatx:      {0, 1, 2, true},
	seccomp.SysAccess:     {-1, 0, -1, true},
	seccomp.SysFaccessat:  {0, 1, -1, true},
	seccomp.SysFaccessat2: {0, 1, 3, true},
	seccomp.SysReadlink:   {-1, 0, -1, false},
	seccomp.SysReadlinkat: {0, 1, -1, false},
}

// fileArgs are the decoded arguments of a file call.
type fileArgs struct {
	path   string
	follow bool
	flags  int // open flags (0 for the stat family)
	open   bool
}

// write reports whether an open may write or create.
func (a fileArgs) write() bool {
	return a.open && a.flags&(unix.O_WRONLY|unix.O_RDWR|unix.O_CREAT|unix.O_TRUNC|unix.O_APPEND) != 0
}

// fileArgs decodes a file call. known is false for calls that are not file
// calls; ok is false when the call should simply continue (an fd
// operation, a path that cannot be read, a caller that is gone).
func (c *call) fileArgs(nr int) (a fileArgs, known, ok bool) {
	fc, known := fileCalls[nr]
	if !known {
		return a, false, false
	}
	dirfd := int32(atFdcwd)
	if fc.dirfd >= 0 {
		dirfd = int32(c.arg(fc.dirfd))
	}
	a.follow = fc.follow
	if fc.flagsArg >= 0 && int(c.arg(fc.flagsArg))&unix.AT_SYMLINK_NOFOLLOW != 0 {
		a.follow = false
	}
	a.path, ok = c.pathArg(dirfd, c.arg(fc.path))
	if !ok || !c.valid() {
		return a, true, false
	}
	switch nr {
	case seccomp.SysOpen:
		a.open, a.flags = true, int(int32(c.arg(1)))
	case seccomp.SysOpenat:
		a.open, a.flags = true, int(int32(c.arg(2)))
	case seccomp.SysOpenat2:
		var b [8]byte // struct open_how starts with __u64 flags
		if c.read(c.arg(2), b[:]) != nil {
			return a, true, false
		}
		a.open, a.flags = true, int(*(*uint64)(unsafe.Pointer(&b[0])))
	}
	return a, true, true
}

// quickFile answers a file call on the receive loop when the handler can
// decide it without I/O (most opens are of local files). It returns false
// when the call still needs answering.
func (s *Supervisor) quickFile(c *call, a fileArgs) bool {
	q, ok := s.h.(QuickFiles)
	if !ok {
		return false
	}
	action, errno, decided := q.QuickFile(c.id, a.path, a.write())
	if !decided {
		return false
	}
	switch action {
	case FileErrno:
		c.fail(errno)
	case FilePassthrough:
		c.cont()
	default:
		return false
	}
	return true
}

// file answers the open, stat, access and readlink families.
func (s *Supervisor) file(c *call, a fileArgs) {
	if a.open {
		s.open(c, a.path, a.flags)
	} else {
		s.stat(c, a.path, a.follow)
	}
}

func (s *Supervisor) open(c *call, path string, flags int) {
	v := s.h.Open(s.ctx, c.id, path, flags)
	switch v.Action {
	case FileErrno:
		c.fail(v.Errno)
	case FileServe:
		if v.File == nil {
			c.fail(unix.EIO)
			return
		}
		_, err := c.l.AddFD(c.n.ID, int(v.File.Fd()), flags&unix.O_CLOEXEC != 0)
		v.File.Close()
		switch err {
		case nil:
			c.s.answered.Add(1)
		case seccomp.ErrGone:
		default:
			c.failWith(err)
		}
	default:
		c.cont()
	}
}

func (s *Supervisor) stat(c *call, path string, follow bool) {
	nr := int(c.n.Data.Nr)
	v := s.h.Stat(s.ctx, c.id, path, follow)
	switch v.Action {
	case FileErrno:
		c.fail(v.Errno)
		return
	case FileServe:
	default:
		c.cont()
		return
	}
	if !c.valid() {
		return // the caller went away while the session answered: its tid may be another thread's by now
	}
	var err error
	switch nr {
	case seccomp.SysStat, seccomp.SysLstat:
		err = c.write(c.arg(1), asBytes(&v.Stat))
	case seccomp.SysNewfstatat:
		err = c.write(c.arg(2), asBytes(&v.Stat))
	case seccomp.SysStatx:
		sx := statxOf(&v.Stat)
		err = c.write(c.arg(4), asBytes(&sx))
	case seccomp.SysAccess, seccomp.SysFaccessat, seccomp.SysFaccessat2:
		mode := c.arg(1)
		if nr != seccomp.SysAccess {
			mode = c.arg(2)
		}
		if mode&unix.X_OK != 0 && v.Stat.Mode&0o111 == 0 {
			c.fail(unix.EACCES)
			return
		}
	case seccomp.SysReadlink, seccomp.SysReadlinkat:
		buf, size := c.arg(1), c.arg(2)
		if nr == seccomp.SysReadlinkat {
			buf, size = c.arg(2), c.arg(3)
		}
		if v.Link == "" {
			c.fail(unix.EINVAL)
			return
		}
		n := min(uint64(len(v.Link)), size)
		if err := c.write(buf, []byte(v.Link[:n])); err != nil {
			c.fail(unix.EFAULT)
			return
		}
		c.ret(int64(n))
		return
	}
	if err != nil {
		c.fail(unix.EFAULT)
		return
	}
	c.ret(0)
}

func asBytes[T any](v *T) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(v)), unsafe.Sizeof(*v))
}

// statxOf converts a stat to what statx(2) returns for STATX_BASIC_STATS.
func statxOf(st *unix.Stat_t) unix.Statx_t {
	ts := func(t unix.Timespec) unix.StatxTimestamp {
		return unix.StatxTimestamp{Sec: t.Sec, Nsec: uint32(t.Nsec)}
	}
	return unix.Statx_t{
		Mask:       unix.STATX_BASIC_STATS,
		Blksize:    uint32(st.Blksize),
		Nlink:      uint32(st.Nlink),
		Uid:        st.Uid,
		Gid:        st.Gid,
		Mode:       uint16(st.Mode),
		Ino:        st.Ino,
		Size:       uint64(st.Size),
		Blocks:     uint64(st.Blocks),
		Atime:      ts(st.Atim),
		Ctime:      ts(st.Ctim),
		Mtime:      ts(st.Mtim),
		Rdev_major: unix.Major(st.Rdev),
		Rdev_minor: unix.Minor(st.Rdev),
		Dev_major:  unix.Major(st.Dev),
		Dev_minor:  unix.Minor(st.Dev),
	}
}

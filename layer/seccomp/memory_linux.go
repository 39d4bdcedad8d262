package seccomp

import (
	"bytes"
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

const pageSize = 4096

// ReadMemory fills buf from address addr of process pid (any thread id of
// it). It uses process_vm_readv and falls back to /proc/pid/mem, which also
// works where the former is filtered or the pages are not readable.
func ReadMemory(pid int, addr uint64, buf []byte) error {
	if len(buf) == 0 {
		return nil
	}
	local := []unix.Iovec{{Base: &buf[0]}}
	local[0].SetLen(len(buf))
	remote := []unix.RemoteIovec{{Base: uintptr(addr), Len: len(buf)}}
	n, err := unix.ProcessVMReadv(pid, local, remote, 0)
	if err == nil && n == len(buf) {
		return nil
	}
	return procMem(pid, addr, buf, false)
}

// WriteMemory copies buf to address addr of process pid.
func WriteMemory(pid int, addr uint64, buf []byte) error {
	if len(buf) == 0 {
		return nil
	}
	local := []unix.Iovec{{Base: &buf[0]}}
	local[0].SetLen(len(buf))
	remote := []unix.RemoteIovec{{Base: uintptr(addr), Len: len(buf)}}
	n, err := unix.ProcessVMWritev(pid, local, remote, 0)
	if err == nil && n == len(buf) {
		return nil
	}
	return procMem(pid, addr, buf, true)
}

func procMem(pid int, addr uint64, buf []byte, write bool) error {
	flag := os.O_RDONLY
	if write {
		flag = os.O_WRONLY
	}
	f, err := os.OpenFile(fmt.Sprintf("/proc/%d/mem", pid), flag, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	var n int
	if write {
		n, err = f.WriteAt(buf, int64(addr))
	} else {
		n, err = f.ReadAt(buf, int64(addr))
	}
	if err != nil {
		return fmt.Errorf("seccomp: %s %d bytes at %#x of %d: %w", map[bool]string{false: "read", true: "write"}[write], len(buf), addr, pid, err)
	}
	if n != len(buf) {
		return fmt.Errorf("seccomp: short access at %#x of %d", addr, pid)
	}
	return nil
}

// ReadString reads a NUL-terminated string of at most max bytes. It reads page
// by page so that a string ending just before an unmapped page is still read.
func ReadString(pid int, addr uint64, max int) (string, error) {
	var out []byte
	var page [pageSize]byte
	for len(out) < max {
		chunk := pageSize - int(addr%pageSize)
		if chunk > max-len(out) {
			chunk = max - len(out)
		}
		b := page[:chunk]
		if err := ReadMemory(pid, addr, b); err != nil {
			return "", err
		}
		if i := bytes.IndexByte(b, 0); i >= 0 {
			return string(append(out, b[:i]...)), nil
		}
		out = append(out, b...)
		addr += uint64(chunk)
	}
	return "", unix.ENAMETOOLONG
}

// ReadStruct reads a fixed-size value (a kernel struct) from the target.
func ReadStruct[T any](pid int, addr uint64, v *T) error {
	return ReadMemory(pid, addr, unsafe.Slice((*byte)(unsafe.Pointer(v)), unsafe.Sizeof(*v)))
}

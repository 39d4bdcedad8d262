// Package seccomp builds and installs the BPF filter that hands a process's
// network and file syscalls to a supervisor (seccomp user notification), and
// wraps the kernel interfaces the supervisor needs: notification ioctls, pidfds
// and access to the target's memory.
//
// The filter targets x86-64. Syscall numbers here are x86-64 numbers whatever
// the build platform, so the filter can be built and tested anywhere.
package seccomp

import (
	"encoding/binary"
	"fmt"
)

// x86-64 syscall numbers of the calls the filter decides on.
const (
	SysOpen         = 2
	SysStat         = 4
	SysLstat        = 6
	SysAccess       = 21
	SysConnect      = 42
	SysSendto       = 44
	SysRecvfrom     = 45
	SysSendmsg      = 46
	SysRecvmsg      = 47
	SysBind         = 49
	SysListen       = 50
	SysGetsockname  = 51
	SysGetpeername  = 52
	SysExecve       = 59
	SysUname        = 63
	SysReadlink     = 89
	SysOpenat       = 257
	SysNewfstatat   = 262
	SysReadlinkat   = 267
	SysRecvmmsg     = 299
	SysFaccessat    = 269
	SysSendmmsg     = 307
	SysExecveat     = 322
	SysStatx        = 332
	SysIoUringSetup = 425
	SysOpenat2      = 437
	SysFaccessat2   = 439
)

// AuditArchX86_64 is seccomp_data.arch for native x86-64 syscalls; i386
// (int 0x80) calls carry AUDIT_ARCH_I386 instead.
const AuditArchX86_64 = 0xc000003e

// x32ABIBit marks x32 syscalls in seccomp_data.nr.
const x32ABIBit = 0x40000000

// Filter return values (SECCOMP_RET_*).
const (
	RetAllow     = 0x7fff0000
	RetUserNotif = 0x7fc00000
	RetErrno     = 0x00050000
	RetKill      = 0x00000000
)

const enosys = 38

// Options says which syscall groups the filter traps. Network calls (connect,
// bind, listen, getsockname, getpeername, sendto with an address) and execve
// are always trapped.
type Options struct {
	// UDP traps sendmsg and sendmmsg too: their destination address sits
	// inside the message, which BPF cannot read, so every call is trapped and
	// the supervisor lets those without an address continue.
	UDP bool
	// Files traps the open, stat, access and readlink families.
	Files bool
	// Hostname traps uname(2), so the process sees another node name
	// (gethostname() is uname's nodename in glibc, Go, Python, Java).
	Hostname bool
	// Exempt allows exactly one sendmsg call without notification: the
	// launcher's hand-over of the listener, which nobody could answer yet.
	Exempt *SendmsgExemption
}

// SendmsgExemption identifies one sendmsg call by its fd and message address.
type SendmsgExemption struct {
	FD  int
	Msg uint64
}

// Instruction is one classic BPF instruction (struct sock_filter).
type Instruction struct {
	Code   uint16
	Jt, Jf uint8
	K      uint32
}

// Program is a classic BPF program for SECCOMP_SET_MODE_FILTER.
type Program []Instruction

// BPF opcodes used by the filter.
const (
	opLdAbsW = 0x20 // BPF_LD | BPF_W | BPF_ABS
	opJeqK   = 0x15 // BPF_JMP | BPF_JEQ | BPF_K
	opJsetK  = 0x45 // BPF_JMP | BPF_JSET | BPF_K
	opRetK   = 0x06 // BPF_RET | BPF_K
)

// Offsets in struct seccomp_data.
const (
	offNr   = 0
	offArch = 4
	offArgs = 16
)

// argLow and argHigh are the offsets of the 32-bit halves of argument i
// (little endian).
func argLow(i int) uint32  { return uint32(offArgs + 8*i) }
func argHigh(i int) uint32 { return argLow(i) + 4 }

// label names a jump target of the assembler below.
type label string

const (
	lAllow  label = "allow"
	lNotify label = "notify"
	lNosys  label = "enosys"
)

// asm is a two-pass assembler for forward jumps to labels.
type asm struct {
	ins    []Instruction
	labels map[label]int
	fixups []fixup
}

type fixup struct {
	at     int
	jt, jf label // "" means the next instruction
}

func (a *asm) emit(i Instruction) { a.ins = append(a.ins, i) }

func (a *asm) mark(l label) { a.labels[l] = len(a.ins) }

func (a *asm) load(off uint32) { a.emit(Instruction{Code: opLdAbsW, K: off}) }

func (a *asm) jump(code uint16, k uint32, jt, jf label) {
	a.fixups = append(a.fixups, fixup{at: len(a.ins), jt: jt, jf: jf})
	a.emit(Instruction{Code: code, K: k})
}

func (a *asm) ret(k uint32) { a.emit(Instruction{Code: opRetK, K: k}) }

func (a *asm) link() (Program, error) {
	for _, f := range a.fixups {
		for _, t := range []struct {
			l   label
			dst *uint8
		}{{f.jt, &a.ins[f.at].Jt}, {f.jf, &a.ins[f.at].Jf}} {
			if t.l == "" {
				continue
			}
			to, ok := a.labels[t.l]
			if !ok {
				return nil, fmt.Errorf("seccomp: undefined label %q", t.l)
			}
			off := to - f.at - 1
			if off < 0 || off > 255 {
				return nil, fmt.Errorf("seccomp: jump to %q out of range (%d)", t.l, off)
			}
			*t.dst = uint8(off)
		}
	}
	return Program(a.ins), nil
}

// Trapped returns the syscalls the filter hands to the supervisor with o, in
// the order the filter tests them.
func Trapped(o Options) []int {
	nrs := []int{SysConnect, SysGetsockname, SysGetpeername, SysBind, SysListen, SysSendto, SysExecve, SysExecveat}
	if o.UDP {
		nrs = append(nrs, SysSendmsg, SysSendmmsg, SysRecvfrom, SysRecvmsg, SysRecvmmsg)
	}
	if o.Hostname {
		nrs = append(nrs, SysUname)
	}
	if o.Files {
		nrs = append(nrs, SysOpenat, SysNewfstatat, SysStatx, SysOpen, SysStat, SysLstat, SysAccess,
			SysFaccessat, SysFaccessat2, SysReadlink, SysReadlinkat, SysOpenat2)
	}
	return nrs
}

// Build returns the filter for o:
//   - any architecture but x86-64 (i386 int 0x80) and x32 calls: ENOSYS,
//     never allowed, since they would bypass the syscall-number checks;
//   - io_uring_setup: ENOSYS, because io_uring operations bypass seccomp
//     (liburing and libuv fall back to plain syscalls);
//   - sendto and recvfrom: notify only when the address (arg 4) is set:
//     an unconnected datagram, a sender to report;
//   - the calls of Trapped(o): notify;
//   - everything else: allow.
func Build(o Options) (Program, error) {
	a := &asm{labels: map[label]int{}}
	a.load(offArch)
	a.jump(opJeqK, AuditArchX86_64, "", lNosys)
	a.load(offNr)
	a.jump(opJsetK, x32ABIBit, lNosys, "")
	a.jump(opJeqK, SysIoUringSetup, lNosys, "")
	for _, nr := range Trapped(o) {
		target := lNotify
		switch {
		case nr == SysSendto || nr == SysRecvfrom:
			target = "arg4"
		case nr == SysSendmsg && o.Exempt != nil:
			target = "sendmsg"
		}
		a.jump(opJeqK, uint32(nr), target, "")
	}
	a.ret(RetAllow)

	// sendto: dest_addr == NULL means a connected socket: nothing to
	// redirect; recvfrom: src_addr == NULL asks for no sender to report.
	a.mark("arg4")
	a.load(argLow(4))
	a.jump(opJeqK, 0, "", lNotify)
	a.load(argHigh(4))
	a.jump(opJeqK, 0, lAllow, lNotify)

	if e := o.Exempt; e != nil && o.UDP {
		a.mark("sendmsg")
		a.load(argLow(0))
		a.jump(opJeqK, uint32(e.FD), "", lNotify)
		a.load(argHigh(0))
		a.jump(opJeqK, uint32(uint64(int64(e.FD))>>32), "", lNotify)
		a.load(argLow(1))
		a.jump(opJeqK, uint32(e.Msg), "", lNotify)
		a.load(argHigh(1))
		a.jump(opJeqK, uint32(e.Msg>>32), lAllow, lNotify)
	}

	// Classic BPF only jumps forward: the shared returns come last.
	a.mark(lAllow)
	a.ret(RetAllow)
	a.mark(lNotify)
	a.ret(RetUserNotif)
	a.mark(lNosys)
	a.ret(RetErrno | enosys)
	return a.link()
}

// sizeofInstruction is sizeof(struct sock_filter).
const sizeofInstruction = 8

// Marshal encodes p as an array of struct sock_filter (little endian), the
// form the preload shim receives.
func (p Program) Marshal() []byte {
	b := make([]byte, 0, len(p)*sizeofInstruction)
	for _, i := range p {
		b = binary.LittleEndian.AppendUint16(b, i.Code)
		b = append(b, i.Jt, i.Jf)
		b = binary.LittleEndian.AppendUint32(b, i.K)
	}
	return b
}

// UnmarshalProgram decodes the output of Marshal.
func UnmarshalProgram(b []byte) (Program, error) {
	if len(b)%sizeofInstruction != 0 || len(b) == 0 {
		return nil, fmt.Errorf("seccomp: program of %d bytes is not a sock_filter array", len(b))
	}
	p := make(Program, len(b)/sizeofInstruction)
	for n := range p {
		c := b[n*sizeofInstruction:]
		p[n] = Instruction{Code: binary.LittleEndian.Uint16(c), Jt: c[2], Jf: c[3], K: binary.LittleEndian.Uint32(c[4:])}
	}
	return p, nil
}

package seccomp

import (
	"encoding/binary"
	"reflect"
	"testing"
)

// run interprets p the way the kernel's seccomp BPF does, for the opcodes
// Build emits, on a seccomp_data made of nr, arch and args.
func run(t *testing.T, p Program, nr int32, arch uint32, args [6]uint64) uint32 {
	t.Helper()
	data := make([]byte, 64)
	binary.LittleEndian.PutUint32(data[0:], uint32(nr))
	binary.LittleEndian.PutUint32(data[4:], arch)
	for i, a := range args {
		binary.LittleEndian.PutUint64(data[offArgs+8*i:], a)
	}
	var acc uint32
	for pc, steps := 0, 0; steps < 1000; steps++ {
		if pc >= len(p) {
			t.Fatalf("pc %d ran off the program", pc)
		}
		i := p[pc]
		switch i.Code {
		case opLdAbsW:
			acc = binary.LittleEndian.Uint32(data[i.K:])
			pc++
		case opJeqK, opJsetK:
			hit := acc == i.K
			if i.Code == opJsetK {
				hit = acc&i.K != 0
			}
			if hit {
				pc += 1 + int(i.Jt)
			} else {
				pc += 1 + int(i.Jf)
			}
		case opRetK:
			return i.K
		default:
			t.Fatalf("unexpected opcode %#x at %d", i.Code, pc)
		}
	}
	t.Fatal("program did not return")
	return 0
}

func TestFilterDecisions(t *testing.T) {
	const archI386 = 0x40000003
	exempt := &SendmsgExemption{FD: 3, Msg: 0x7f00_1234_5678}
	cases := []struct {
		name string
		opts Options
		nr   int32
		arch uint32
		args [6]uint64
		want uint32
	}{
		{"connect", Options{}, SysConnect, AuditArchX86_64, [6]uint64{}, RetUserNotif},
		{"read allowed", Options{}, 0, AuditArchX86_64, [6]uint64{}, RetAllow},
		{"i386 connect refused", Options{}, SysConnect, archI386, [6]uint64{}, RetErrno | enosys},
		{"i386 anything refused", Options{}, 1, archI386, [6]uint64{}, RetErrno | enosys},
		{"x32 refused", Options{}, SysConnect | x32ABIBit, AuditArchX86_64, [6]uint64{}, RetErrno | enosys},
		{"io_uring_setup refused", Options{}, SysIoUringSetup, AuditArchX86_64, [6]uint64{}, RetErrno | enosys},
		{"sendto without address", Options{}, SysSendto, AuditArchX86_64, [6]uint64{}, RetAllow},
		{"sendto with address", Options{}, SysSendto, AuditArchX86_64, [6]uint64{4: 0x1000}, RetUserNotif},
		{"sendto with high address", Options{}, SysSendto, AuditArchX86_64, [6]uint64{4: 0x7fff_0000_0000}, RetUserNotif},
		{"recvfrom without address", Options{UDP: true}, SysRecvfrom, AuditArchX86_64, [6]uint64{}, RetAllow},
		{"recvfrom with address", Options{UDP: true}, SysRecvfrom, AuditArchX86_64, [6]uint64{4: 0x1000}, RetUserNotif},
		{"recvfrom without the UDP group", Options{}, SysRecvfrom, AuditArchX86_64, [6]uint64{4: 0x1000}, RetAllow},
		{"sendmsg not trapped", Options{}, SysSendmsg, AuditArchX86_64, [6]uint64{}, RetAllow},
		{"sendmsg trapped with udp", Options{UDP: true}, SysSendmsg, AuditArchX86_64, [6]uint64{}, RetUserNotif},
		{"sendmmsg trapped with udp", Options{UDP: true}, SysSendmmsg, AuditArchX86_64, [6]uint64{}, RetUserNotif},
		{"recvmmsg trapped with udp", Options{UDP: true}, SysRecvmmsg, AuditArchX86_64, [6]uint64{}, RetUserNotif},
		{"recvmmsg not trapped", Options{}, SysRecvmmsg, AuditArchX86_64, [6]uint64{}, RetAllow},
		{"exempt sendmsg", Options{UDP: true, Exempt: exempt}, SysSendmsg, AuditArchX86_64, [6]uint64{3, exempt.Msg}, RetAllow},
		{"other fd sendmsg", Options{UDP: true, Exempt: exempt}, SysSendmsg, AuditArchX86_64, [6]uint64{4, exempt.Msg}, RetUserNotif},
		{"other msg sendmsg", Options{UDP: true, Exempt: exempt}, SysSendmsg, AuditArchX86_64, [6]uint64{3, exempt.Msg + 1}, RetUserNotif},
		{"other high msg sendmsg", Options{UDP: true, Exempt: exempt}, SysSendmsg, AuditArchX86_64, [6]uint64{3, exempt.Msg ^ 1<<33}, RetUserNotif},
		{"openat without files", Options{}, SysOpenat, AuditArchX86_64, [6]uint64{}, RetAllow},
		{"openat with files", Options{Files: true}, SysOpenat, AuditArchX86_64, [6]uint64{}, RetUserNotif},
		{"statx with files", Options{Files: true}, SysStatx, AuditArchX86_64, [6]uint64{}, RetUserNotif},
		{"execve", Options{}, SysExecve, AuditArchX86_64, [6]uint64{}, RetUserNotif},
		{"fstat allowed with files", Options{Files: true}, 5, AuditArchX86_64, [6]uint64{}, RetAllow},
	}
	for _, c := range cases {
		p, err := Build(c.opts)
		if err != nil {
			t.Fatal(err)
		}
		if got := run(t, p, c.nr, c.arch, c.args); got != c.want {
			t.Errorf("%s: got %#x, want %#x", c.name, got, c.want)
		}
	}
}

func TestFilterTrapsExactlyTrapped(t *testing.T) {
	for _, o := range []Options{{}, {UDP: true}, {Files: true}, {UDP: true, Files: true}} {
		p, err := Build(o)
		if err != nil {
			t.Fatal(err)
		}
		trapped := map[int]bool{}
		for _, nr := range Trapped(o) {
			trapped[nr] = true
		}
		for nr := 0; nr < 500; nr++ {
			want := uint32(RetAllow)
			switch {
			case nr == SysIoUringSetup:
				want = RetErrno | enosys
			case trapped[nr]:
				want = RetUserNotif
			}
			args := [6]uint64{4: 1} // sendto with an address
			if got := run(t, p, int32(nr), AuditArchX86_64, args); got != want {
				t.Errorf("%+v: syscall %d: got %#x, want %#x", o, nr, got, want)
			}
		}
	}
}

func TestProgramMarshal(t *testing.T) {
	p, err := Build(Options{UDP: true, Files: true, Exempt: &SendmsgExemption{FD: 5, Msg: 0xc000123456}})
	if err != nil {
		t.Fatal(err)
	}
	b := p.Marshal()
	if len(b) != 8*len(p) {
		t.Fatalf("marshalled %d bytes for %d instructions", len(b), len(p))
	}
	// struct sock_filter { __u16 code; __u8 jt, jf; __u32 k; }: first is ld arch.
	if want := []byte{0x20, 0, 0, 0, 4, 0, 0, 0}; !reflect.DeepEqual(b[:8], want) {
		t.Errorf("first instruction %x, want %x", b[:8], want)
	}
	q, err := UnmarshalProgram(b)
	if err != nil || !reflect.DeepEqual(p, q) {
		t.Errorf("round trip: %v %v", err, q)
	}
	if _, err := UnmarshalProgram(b[:7]); err == nil {
		t.Error("7 bytes decoded")
	}
}

func TestCheckRelease(t *testing.T) {
	cases := []struct {
		release string
		files   bool
		err     string
		warn    int
	}{
		{"6.18.44-fc-v657", true, "", 0},
		{"5.19.0", true, "", 0},
		{"5.15.0-91-generic", true, "", 1},
		{"5.10.0-28-amd64", false, "", 1},
		{"5.10.0-28-amd64", true, "seccomp: kernel 5.10.0-28-amd64 is too old: need 5.14 (SECCOMP_ADDFD_FLAG_SEND) (5.19 or newer recommended)", 0},
		{"5.6.0", false, "seccomp: kernel 5.6.0 is too old: need 5.7 (SECCOMP_FILTER_FLAG_TSYNC_ESRCH) (5.19 or newer recommended)", 0},
		{"4.19.0", false, "seccomp: kernel 4.19.0 is too old: need 5.7 (SECCOMP_FILTER_FLAG_TSYNC_ESRCH) (5.19 or newer recommended)", 0},
	}
	for _, c := range cases {
		warn, err := checkRelease(c.release, Options{Files: c.files})
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != c.err || len(warn) != c.warn {
			t.Errorf("%s files=%v: err %q warn %v; want %q and %d warnings", c.release, c.files, got, warn, c.err, c.warn)
		}
	}
}

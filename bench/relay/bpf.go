package main

// BPF sockmap relay: the program is assembled with cilium/ebpf's asm package
// (no clang on this machine).
//
// Layout:
//   sockmap  BPF_MAP_TYPE_SOCKMAP  key u32 slot -> socket (value = fd on update)
//   peer     BPF_MAP_TYPE_HASH     key u64 socket cookie -> u32 slot of the peer socket
//
// Verdict program (sk_skb):
//   cookie = bpf_get_socket_cookie(skb)
//   slot = peer[cookie]; if none -> SK_PASS (data stays on the socket for user space)
//   return bpf_sk_redirect_map(skb, sockmap, *slot, 0 /* egress */)
//
// Parser program (only for -attach=parser): return skb->len.

import (
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

const sockmapSlots = 1024

type bpfRelay struct {
	sockmap *ebpf.Map
	peer    *ebpf.Map
	verdict *ebpf.Program
	parser  *ebpf.Program
	attach  string

	mu   sync.Mutex
	free []uint32 // free pair indices (slot 2i and 2i+1)
}

func newBPFRelay(attach string) (*bpfRelay, error) {
	r := &bpfRelay{attach: attach}
	var err error
	r.sockmap, err = ebpf.NewMap(&ebpf.MapSpec{Name: "relay_socks", Type: ebpf.SockMap, KeySize: 4, ValueSize: 4, MaxEntries: sockmapSlots})
	if err != nil {
		return nil, fmt.Errorf("create SOCKMAP: %w", err)
	}
	r.peer, err = ebpf.NewMap(&ebpf.MapSpec{Name: "relay_peer", Type: ebpf.Hash, KeySize: 8, ValueSize: 4, MaxEntries: 2 * sockmapSlots})
	if err != nil {
		return nil, fmt.Errorf("create peer HASH: %w", err)
	}
	insns := asm.Instructions{
		asm.Mov.Reg(asm.R6, asm.R1),
	}
	if !*flRedirectEmpty {
		// A FIN without data reaches the verdict program as a zero-length skb. Redirected
		// to the peer's egress, the psock backlog's do/while sends 0 bytes, treats the 0 as a
		// hard error: sk_err=EPIPE on the peer and TX disabled. So: drop empty skbs (the FIN
		// itself is already accounted in the TCP state: RCV_SHUTDOWN is set on this socket).
		insns = append(insns,
			asm.LoadMem(asm.R2, asm.R1, 0, asm.Word), // skb->len
			asm.JNE.Imm(asm.R2, 0, "nonempty"),
			asm.Mov.Imm(asm.R0, 0), // SK_DROP
			asm.Return(),
			asm.Mov.Reg(asm.R1, asm.R6).WithSymbol("nonempty"),
		)
	}
	insns = append(insns,
		asm.FnGetSocketCookie.Call(),
		asm.StoreMem(asm.RFP, -8, asm.R0, asm.DWord),
		asm.LoadMapPtr(asm.R1, r.peer.FD()),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -8),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "pass"),
		asm.LoadMem(asm.R3, asm.R0, 0, asm.Word),
		asm.Mov.Reg(asm.R1, asm.R6),
		asm.LoadMapPtr(asm.R2, r.sockmap.FD()),
		asm.Mov.Imm(asm.R4, 0), // flags 0 = redirect to the peer's EGRESS (BPF_F_INGRESS not set)
		asm.FnSkRedirectMap.Call(),
		asm.Return(),
		asm.Mov.Imm(asm.R0, 1).WithSymbol("pass"), // SK_PASS
		asm.Return(),
	)
	vat := ebpf.AttachSkSKBVerdict
	if attach != "verdict" {
		vat = ebpf.AttachSkSKBStreamVerdict
	}
	r.verdict, err = ebpf.NewProgramWithOptions(&ebpf.ProgramSpec{Name: "relay_verdict", Type: ebpf.SkSKB, AttachType: vat, Instructions: insns, License: "GPL"},
		ebpf.ProgramOptions{LogLevel: ebpf.LogLevelInstruction})
	if err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			fmt.Fprintf(os.Stderr, "verifier log:\n%+v\n", ve)
		}
		return nil, fmt.Errorf("load verdict program: %w", err)
	}
	if attach == "parser" {
		r.parser, err = ebpf.NewProgram(&ebpf.ProgramSpec{Name: "relay_parser", Type: ebpf.SkSKB, AttachType: ebpf.AttachSkSKBStreamParser, License: "GPL",
			Instructions: asm.Instructions{asm.LoadMem(asm.R0, asm.R1, 0, asm.Word), asm.Return()}}) // __sk_buff.len at offset 0
		if err != nil {
			return nil, fmt.Errorf("load parser program: %w", err)
		}
		if err := link.RawAttachProgram(link.RawAttachProgramOptions{Target: r.sockmap.FD(), Program: r.parser, Attach: ebpf.AttachSkSKBStreamParser}); err != nil {
			return nil, fmt.Errorf("attach stream parser: %w", err)
		}
	}
	if err := link.RawAttachProgram(link.RawAttachProgramOptions{Target: r.sockmap.FD(), Program: r.verdict, Attach: vat}); err != nil {
		return nil, fmt.Errorf("attach %v: %w", vat, err)
	}
	for i := uint32(0); i < sockmapSlots/2; i++ {
		r.free = append(r.free, sockmapSlots/2-1-i)
	}
	return r, nil
}

func sockCookie(fd int) (uint64, error) {
	return unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_COOKIE)
}

// add inserts the pair (fdA, fdB); bytes arriving on A are sent out of B and vice versa.
func (r *bpfRelay) add(fdA, fdB int) (pair uint32, err error) {
	r.mu.Lock()
	if len(r.free) == 0 {
		r.mu.Unlock()
		return 0, errors.New("sockmap full")
	}
	pair = r.free[len(r.free)-1]
	r.free = r.free[:len(r.free)-1]
	r.mu.Unlock()
	ca, err := sockCookie(fdA)
	if err != nil {
		return 0, err
	}
	cb, err := sockCookie(fdB)
	if err != nil {
		return 0, err
	}
	sa, sb := 2*pair, 2*pair+1
	// Both sockets into the sockmap first, peer entries last: until the peer
	// entries exist the program returns SK_PASS (data stays readable by user
	// space). The other order would make bpf_sk_redirect_map fail for data
	// arriving on A while B is not yet in the map -> SK_DROP -> acked data lost.
	if err := r.sockmap.Put(sa, uint32(fdA)); err != nil {
		return 0, fmt.Errorf("sockmap put A: %w", err)
	}
	if err := r.sockmap.Put(sb, uint32(fdB)); err != nil {
		return 0, fmt.Errorf("sockmap put B: %w", err)
	}
	if err := r.peer.Put(ca, sb); err != nil {
		return 0, fmt.Errorf("peer put: %w", err)
	}
	if err := r.peer.Put(cb, sa); err != nil {
		return 0, fmt.Errorf("peer put: %w", err)
	}
	return pair, nil
}

func (r *bpfRelay) remove(pair uint32, fdA, fdB int) {
	if ca, err := sockCookie(fdA); err == nil {
		r.peer.Delete(ca)
	}
	if cb, err := sockCookie(fdB); err == nil {
		r.peer.Delete(cb)
	}
	r.sockmap.Delete(2 * pair)
	r.sockmap.Delete(2*pair + 1)
	r.mu.Lock()
	r.free = append(r.free, pair)
	r.mu.Unlock()
}

//go:build linux

package incoming

import (
	"encoding/binary"
	"fmt"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// packetRing is a packet socket's TPACKET_V3 receive ring: the kernel
// fills blocks of segments in memory shared with the agent and hands a
// block over when it is full or ringTimeoutMS old, so the capture wakes
// once per block instead of once per segment (with a recvfrom each): at
// a thousand mirrored requests a second most of the capture's cost was
// those wake-ups, taken from the cores the target runs on.
type packetRing struct {
	mem       []byte
	blockSize int
	blocks    int
	next      int // the block to look at next
}

// Ring geometry: 8 MiB in all, as the socket buffer it replaces; a block
// holds any segment (64 KiB with offloads) and many small ones.
const (
	ringBlockSize = 1 << 20
	ringBlocks    = 8
	ringTimeoutMS = 4 // a copy waits at most this long in a block
)

// Offsets in the ring's structures (linux/if_packet.h): a block starts
// with tpacket_block_desc (version, offset to private data, then
// tpacket_hdr_v1), a segment with tpacket3_hdr and its sockaddr_ll.
const (
	blockStatusOff   = 8  // tpacket_hdr_v1.block_status
	blockNumPktsOff  = 12 // .num_pkts
	blockFirstPktOff = 16 // .offset_to_first_pkt
	pktNextOff       = 0  // tpacket3_hdr.tp_next_offset
	pktSnaplenOff    = 12 // .tp_snaplen
	pktLenOff        = 16 // .tp_len
	pktNetOff        = 26 // .tp_net
	pktHdrLen        = 48 // TPACKET_ALIGN(sizeof(struct tpacket3_hdr))
	sllPkttypeOff    = pktHdrLen + 10
)

// newPacketRing sets up a TPACKET_V3 ring on the packet socket fd (before
// it is bound or read). After a failure the socket may hold a ring nobody
// reads: it is for closing, not for reading segment by segment.
func newPacketRing(fd int) (*packetRing, error) {
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VERSION, unix.TPACKET_V3); err != nil {
		return nil, fmt.Errorf("PACKET_VERSION TPACKET_V3: %w", err)
	}
	req := unix.TpacketReq3{
		Block_size:     ringBlockSize,
		Block_nr:       ringBlocks,
		Frame_size:     ringBlockSize, // V3 packs segments of any size into a block
		Frame_nr:       ringBlocks,
		Retire_blk_tov: ringTimeoutMS,
	}
	if err := unix.SetsockoptTpacketReq3(fd, unix.SOL_PACKET, unix.PACKET_RX_RING, &req); err != nil {
		return nil, fmt.Errorf("PACKET_RX_RING: %w", err)
	}
	mem, err := unix.Mmap(fd, 0, ringBlockSize*ringBlocks, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("mapping the packet ring: %w", err)
	}
	return &packetRing{mem: mem, blockSize: ringBlockSize, blocks: ringBlocks}, nil
}

func (r *packetRing) status(block []byte) *uint32 {
	return (*uint32)(unsafe.Pointer(&block[blockStatusOff]))
}

// drain passes each segment of every block the kernel handed over to fn
// (its network-layer bytes, its packet type, and whether it was cut
// short) and gives the blocks back; it reports whether there were any.
// The bytes are the ring's: fn copies what it keeps.
func (r *packetRing) drain(fn func(pkt []byte, pkttype uint8, truncated bool)) bool {
	got := false
	for {
		block := r.mem[r.next*r.blockSize : (r.next+1)*r.blockSize]
		st := r.status(block)
		if atomic.LoadUint32(st)&unix.TP_STATUS_USER == 0 {
			return got
		}
		got = true
		n := binary.NativeEndian.Uint32(block[blockNumPktsOff:])
		off := int(binary.NativeEndian.Uint32(block[blockFirstPktOff:]))
		for i := uint32(0); i < n && off+sllPkttypeOff < len(block); i++ {
			pkt := block[off:]
			snap := int(binary.NativeEndian.Uint32(pkt[pktSnaplenOff:]))
			full := int(binary.NativeEndian.Uint32(pkt[pktLenOff:]))
			net := int(binary.NativeEndian.Uint16(pkt[pktNetOff:]))
			if net+snap <= len(pkt) {
				fn(pkt[net:net+snap], pkt[sllPkttypeOff], snap < full)
			}
			next := int(binary.NativeEndian.Uint32(pkt[pktNextOff:]))
			if next == 0 {
				break
			}
			off += next
		}
		atomic.StoreUint32(st, unix.TP_STATUS_KERNEL)
		r.next = (r.next + 1) % r.blocks
	}
}

// close unmaps the ring; nothing may read it after.
func (r *packetRing) close() {
	unix.Munmap(r.mem)
	r.mem = nil
}

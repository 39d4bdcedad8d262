package layer

import "sync"

// socketTable remembers a value per socket inode: the original peer of a
// redirected socket, the requested address of a rebound one. Socket inode
// numbers are not reused soon, but nothing reports a closed socket cheaply,
// so the table keeps two generations and forgets the older one when the
// newer fills up: memory stays bounded and recent sockets are always found.
type socketTable[V any] struct {
	mu       sync.Mutex
	cur, old map[uint64]V
	max      int
}

func newSocketTable[V any](max int) *socketTable[V] {
	return &socketTable[V]{cur: map[uint64]V{}, max: max}
}

func (t *socketTable[V]) put(ino uint64, v V) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.cur) >= t.max {
		t.old, t.cur = t.cur, make(map[uint64]V, t.max)
	}
	t.cur[ino] = v
}

func (t *socketTable[V]) get(ino uint64) (V, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if v, ok := t.cur[ino]; ok {
		return v, true
	}
	v, ok := t.old[ino]
	return v, ok
}

// empty reports whether nothing was ever remembered: the common case in
// which getpeername and getsockname need no lookup at all.
func (t *socketTable[V]) empty() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.cur) == 0 && len(t.old) == 0
}

package layer

import "testing"

func TestSocketTableGenerations(t *testing.T) {
	tb := newSocketTable[int](2)
	if !tb.empty() {
		t.Fatal("new table not empty")
	}
	tb.put(1, 10)
	tb.put(2, 20)
	tb.put(3, 30) // 1 and 2 become the old generation
	for ino, want := range map[uint64]int{1: 10, 2: 20, 3: 30} {
		if v, ok := tb.get(ino); !ok || v != want {
			t.Errorf("get(%d) = %d %v", ino, v, ok)
		}
	}
	tb.put(4, 40) // 3 and 4 current; 1 and 2 forgotten
	tb.put(5, 50)
	if _, ok := tb.get(1); ok {
		t.Error("inode 1 still remembered after two generations")
	}
	if v, ok := tb.get(4); !ok || v != 40 {
		t.Errorf("get(4) = %d %v", v, ok)
	}
}

package layer

import "testing"

func TestResolvePath(t *testing.T) {
	cases := []struct{ base, p, want string }{
		{"/home/u", "/etc/hosts", "/etc/hosts"},
		{"/home/u", "app.conf", "/home/u/app.conf"},
		{"/home/u/src", "../etc/./x", "/home/u/etc/x"},
		{"/", "etc/resolv.conf", "/etc/resolv.conf"},
		{"/var/run", "../../..", "/"},
		{"/etc", "//etc//hosts/", "/etc/hosts"},
		{"/a", ".", "/a"},
	}
	for _, c := range cases {
		if got := resolvePath(c.base, c.p); got != c.want {
			t.Errorf("resolvePath(%q, %q) = %q, want %q", c.base, c.p, got, c.want)
		}
	}
}

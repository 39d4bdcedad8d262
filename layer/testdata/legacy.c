/* Syscalls that must not get past the filter: an i386 syscall (int 0x80)
 * from a 64-bit process, an x32 syscall, and io_uring_setup. One per run
 * (argv[1]: int80, x32 or io_uring), since a kernel may kill the process
 * for int 0x80 itself. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv) {
	const char *mode = argc > 1 ? argv[1] : "";
	long r;
	if (strcmp(mode, "int80") == 0) {
		/* i386 getpid is 20. */
		__asm__ volatile("int $0x80" : "=a"(r) : "a"(20L) : "memory");
		printf("int80=%ld\n", r);
	} else if (strcmp(mode, "x32") == 0) {
		/* x32 getpid: __X32_SYSCALL_BIT | 39. */
		__asm__ volatile("syscall" : "=a"(r) : "a"(0x40000000L | 39) : "rcx", "r11", "memory");
		printf("x32=%ld\n", r);
	} else if (strcmp(mode, "io_uring") == 0) {
		r = syscall(425 /* io_uring_setup */, 8, NULL);
		printf("io_uring=%ld errno=%d\n", r, r < 0 ? errno : 0);
	} else {
		fprintf(stderr, "usage: legacy int80|x32|io_uring\n");
		return 2;
	}
	return 0;
}

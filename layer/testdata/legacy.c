/* Syscalls that must not get past the filter: an i386 syscall (int 0x80)
 * from a 64-bit process, an x32 syscall, and io_uring_setup. */
#include <errno.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(void) {
	long r;
	/* i386 getpid is 20. */
	__asm__ volatile("int $0x80" : "=a"(r) : "a"(20L) : "memory");
	printf("int80=%ld\n", r);
	/* x32 getpid: __X32_SYSCALL_BIT | 39. */
	__asm__ volatile("syscall" : "=a"(r) : "a"(0x40000000L | 39) : "rcx", "r11", "memory");
	printf("x32=%ld\n", r);
	r = syscall(425 /* io_uring_setup */, 8, NULL);
	printf("io_uring=%ld errno=%d\n", r, r < 0 ? errno : 0);
	return 0;
}
